//! Scheduled floors: a dated minimum an operator sets because they know what the
//! forecaster cannot (a launch, a sale, a promotion planned for tomorrow). Each entry has
//! a minimum, a timezone, and either a cron expression with a duration (every weekday
//! from 09:00 for 8 hours) or a date range (from the 24th to the 27th), and may exclude
//! dates. While one is in force the decision is at least its minimum (never above the
//! service's maximum), with its own reason, `scheduled`.
//!
//! Cron expressions are the usual five fields (minute, hour, day of month, month, day of
//! week; `croner`'s parser), read in the entry's timezone, so "09:00 in Berlin" stays
//! 09:00 across daylight saving changes.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// One `[[schedule]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// A name for logs and the API (`black-friday`).
    pub name: String,
    /// The services it applies to: `namespace/name`, `name`, or a selector such as
    /// `shop/*` (every service when left out).
    #[serde(default = "every_service")]
    pub services: String,
    /// The floor while it is in force.
    pub min_replicas: u32,
    /// IANA timezone the times are in (`Europe/Berlin`); UTC when left out.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Five-field cron expression of when it starts (with `duration`).
    #[serde(default)]
    pub cron: Option<String>,
    /// How long it holds after each cron start (`8h`).
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<std::time::Duration>,
    /// Start of a date range, local time (`2026-11-27T00:00:00`), instead of a cron.
    #[serde(default)]
    pub from: Option<NaiveDateTime>,
    /// End of the date range (exclusive), local time.
    #[serde(default)]
    pub to: Option<NaiveDateTime>,
    /// Local dates on which it is not in force (`["2026-12-25"]`).
    #[serde(default)]
    pub except: Vec<NaiveDate>,
}

fn every_service() -> String {
    "*".to_owned()
}

fn utc() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Clone)]
enum When {
    Cron { cron: Box<croner::Cron>, duration: chrono::Duration },
    Range { from: NaiveDateTime, to: NaiveDateTime },
}

/// A checked scheduled floor.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// The floor.
    pub min_replicas: u32,
    timezone: Tz,
    when: When,
    except: Vec<NaiveDate>,
}

impl Schedule {
    /// Checks an entry, naming the first bad field (`cron`, `timezone`, ...).
    pub fn new(s: &ScheduleSettings) -> Result<Self, PolicyError> {
        let bad = |field: &'static str, reason: String| PolicyError::Config { field, reason };
        if s.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        if s.min_replicas == 0 {
            return Err(bad("min_replicas", "a floor of 0 is no floor".into()));
        }
        let timezone: Tz =
            s.timezone.parse().map_err(|_| bad("timezone", format!("{:?} is not an IANA timezone", s.timezone)))?;
        let when = match (&s.cron, s.duration, s.from, s.to) {
            (Some(expr), Some(d), None, None) => {
                let cron = croner::Cron::new(expr)
                    .parse()
                    .map_err(|e| bad("cron", format!("{expr:?} is not a five-field cron expression: {e}")))?;
                let duration = chrono::Duration::from_std(d)
                    .ok()
                    .filter(|d| *d > chrono::Duration::zero())
                    .ok_or_else(|| bad("duration", "must be positive".into()))?;
                When::Cron { cron: Box::new(cron), duration }
            }
            (Some(_), None, None, None) => return Err(bad("duration", "a cron entry needs how long it holds".into())),
            (None, None, Some(from), Some(to)) => {
                if to <= from {
                    return Err(bad("to", format!("{to} is not after from {from}")));
                }
                When::Range { from, to }
            }
            (None, None, Some(_), None) => return Err(bad("to", "a date range needs its end".into())),
            (None, None, None, Some(_)) => return Err(bad("from", "a date range needs its start".into())),
            (None, _, None, None) => return Err(bad("cron", "give a cron with a duration, or from and to".into())),
            _ => return Err(bad("cron", "give either a cron with a duration or from and to, not both".into())),
        };
        Ok(Self { name: s.name.clone(), min_replicas: s.min_replicas, timezone, when, except: s.except.clone() })
    }

    /// Whether it holds at `t`.
    pub fn in_force(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.timezone);
        if self.except.contains(&local.date_naive()) {
            return false;
        }
        match &self.when {
            When::Range { from, to } => {
                let naive = local.naive_local();
                *from <= naive && naive < *to
            }
            // In force on [start, start + duration): the first start strictly after
            // `t - duration` is not after `t`.
            When::Cron { cron, duration } => {
                let since = (t - *duration).with_timezone(&self.timezone);
                cron.find_next_occurrence(&since, false).is_ok_and(|start| start <= local)
            }
        }
    }
}

/// The highest floor in force at `t` and its schedule's name.
pub fn floor_at(schedules: &[Schedule], t: DateTime<Utc>) -> Option<(u32, &str)> {
    schedules.iter().filter(|s| s.in_force(t)).max_by_key(|s| s.min_replicas).map(|s| (s.min_replicas, s.name.as_str()))
}

/// `t` as UTC from a local time in `tz` (the earlier one when ambiguous); for tests and
/// callers that think in local time.
pub fn local(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive).earliest().map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> ScheduleSettings {
        prescale_core::config::from_toml_str(toml_text).unwrap()
    }

    fn at(tz: &str, s: &str) -> DateTime<Utc> {
        local(tz.parse().unwrap(), s.parse().unwrap()).unwrap()
    }

    #[test]
    fn a_cron_floor_holds_in_its_window_and_timezone_only() {
        let s = Schedule::new(&settings(
            "name = \"office\"\nmin_replicas = 6\ntimezone = \"Europe/Berlin\"\ncron = \"0 9 * * 1-5\"\nduration = \"8h\"\nexcept = [\"2026-12-25\"]\n",
        ))
        .unwrap();
        // Wednesday 2 December 2026.
        assert!(s.in_force(at("Europe/Berlin", "2026-12-02T09:00:00")));
        assert!(s.in_force(at("Europe/Berlin", "2026-12-02T16:59:00")));
        assert!(!s.in_force(at("Europe/Berlin", "2026-12-02T17:00:00")));
        assert!(!s.in_force(at("Europe/Berlin", "2026-12-02T08:59:00")));
        // 09:30 in UTC is 10:30 in Berlin (in force); 07:30 UTC is 08:30 (not yet).
        assert!(s.in_force(at("UTC", "2026-12-02T09:30:00")));
        assert!(!s.in_force(at("UTC", "2026-12-02T07:30:00")));
        // In summer (UTC+2), 07:30 UTC is 09:30 in Berlin.
        assert!(s.in_force(at("UTC", "2026-07-01T07:30:00")));
        // Not at the weekend, not on the excluded date (a Friday).
        assert!(!s.in_force(at("Europe/Berlin", "2026-12-05T10:00:00")));
        assert!(!s.in_force(at("Europe/Berlin", "2026-12-25T10:00:00")));
        assert!(s.in_force(at("Europe/Berlin", "2026-12-24T10:00:00")));
    }

    #[test]
    fn a_date_range_floor_and_the_highest_floor_wins() {
        let sale = Schedule::new(&settings(
            "name = \"sale\"\nmin_replicas = 20\ntimezone = \"America/New_York\"\nfrom = \"2026-11-27T00:00:00\"\nto = \"2026-11-30T00:00:00\"\n",
        ))
        .unwrap();
        assert!(sale.in_force(at("America/New_York", "2026-11-27T00:00:00")));
        assert!(sale.in_force(at("America/New_York", "2026-11-29T23:59:00")));
        assert!(!sale.in_force(at("America/New_York", "2026-11-30T00:00:00")));
        // 03:00 UTC on the 27th is still the 26th in New York.
        assert!(!sale.in_force(at("UTC", "2026-11-27T03:00:00")));
        let small = Schedule::new(&settings(
            "name = \"always\"\nmin_replicas = 3\nfrom = \"2026-01-01T00:00:00\"\nto = \"2027-01-01T00:00:00\"\n",
        ))
        .unwrap();
        let both = [small, sale];
        assert_eq!(floor_at(&both, at("America/New_York", "2026-11-28T12:00:00")), Some((20, "sale")));
        assert_eq!(floor_at(&both, at("UTC", "2026-06-01T12:00:00")), Some((3, "always")));
        assert_eq!(floor_at(&both, at("UTC", "2027-06-01T12:00:00")), None);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let err = |text: &str| Schedule::new(&settings(text)).unwrap_err().to_string();
        let e = err("name = \"x\"\nmin_replicas = 2\ncron = \"0 25 * * *\"\nduration = \"1h\"\n");
        assert!(e.contains("cron") && e.contains("0 25 * * *"), "{e}");
        let e = err("name = \"x\"\nmin_replicas = 2\ncron = \"every day\"\nduration = \"1h\"\n");
        assert!(e.contains("cron"), "{e}");
        let e = err(
            "name = \"x\"\nmin_replicas = 2\ntimezone = \"Mars/Olympus\"\ncron = \"0 9 * * *\"\nduration = \"1h\"\n",
        );
        assert!(e.contains("timezone") && e.contains("Mars/Olympus"), "{e}");
        assert!(err("name = \"x\"\nmin_replicas = 2\ncron = \"0 9 * * *\"\n").contains("duration"));
        assert!(
            err("name = \"x\"\nmin_replicas = 2\nfrom = \"2026-01-02T00:00:00\"\nto = \"2026-01-01T00:00:00\"\n")
                .contains("to")
        );
        assert!(
            err("name = \"x\"\nmin_replicas = 0\ncron = \"0 9 * * *\"\nduration = \"1h\"\n").contains("min_replicas")
        );
        assert!(err("name = \"x\"\nmin_replicas = 2\n").contains("cron"));
    }
}
