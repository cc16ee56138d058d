//! Grafana dashboards (JSON models): every PromQL query they run, panel targets and
//! template-variable queries, with the template variables replaced by what "All" selects,
//! so that a test can run each one against a real Prometheus.

use std::path::Path;

use serde_json::Value;

/// A query of a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A panel target: an instant query.
    Panel {
        /// The panel's title.
        panel: String,
        /// The PromQL, variables replaced.
        expr: String,
    },
    /// A template variable's `label_values(selector, label)`: a series query.
    Variable {
        /// The variable's name.
        name: String,
        /// The series selector.
        selector: String,
        /// The label whose values it lists.
        label: String,
    },
}

/// What is wrong with a dashboard.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DashboardError {
    /// The dashboard file.
    pub file: String,
    /// What.
    pub message: String,
}

/// `$namespace` and `$service` (multi-value, with "All" as `.+`) as Grafana sends them.
fn substitute(expr: &str) -> String {
    expr.replace("$namespace", ".+").replace("$service", ".+")
}

/// Every query of the dashboard in `path`.
pub fn queries(path: &Path) -> Result<Vec<Query>, DashboardError> {
    let file = path.display().to_string();
    let err = |message: String| DashboardError { file: file.clone(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let d: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    for key in ["uid", "title"] {
        if !d[key].is_string() {
            return Err(err(format!("no {key}")));
        }
    }
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?").to_owned();
        let q = v["query"]["query"].as_str().ok_or_else(|| err(format!("variable {name} has no query")))?;
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| err(format!("variable {name}: only label_values(selector, label) is used, not {q}")))?;
        let (selector, label) =
            inner.rsplit_once(',').ok_or_else(|| err(format!("variable {name}: label_values needs a selector")))?;
        out.push(Query::Variable { name, selector: substitute(selector.trim()), label: label.trim().to_owned() });
    }
    // Annotation queries (built-in ones have no expr).
    for a in d["annotations"]["list"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if let Some(expr) = a["expr"].as_str() {
            let name = a["name"].as_str().unwrap_or("?");
            out.push(Query::Panel { panel: format!("annotation {name}"), expr: substitute(expr) });
        }
    }
    let panels = d["panels"].as_array().ok_or_else(|| err("no panels".into()))?;
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        if targets.is_empty() {
            return Err(err(format!("panel {title:?} has no query")));
        }
        for t in targets {
            let expr = t["expr"].as_str().ok_or_else(|| err(format!("panel {title:?}: a target without expr")))?;
            out.push(Query::Panel { panel: title.clone(), expr: substitute(expr) });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_and_variable_queries_with_all_selected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        std::fs::write(
            &path,
            r#"{"uid": "u", "title": "t",
               "templating": {"list": [{"name": "service", "type": "query", "query": {"query": "label_values(up{namespace=~\"$namespace\"}, service)"}}]},
               "panels": [{"title": "p", "targets": [{"expr": "rate(x{service=~\"$service\"}[1m])"}]}]}"#,
        )
        .unwrap();
        let q = queries(&path).unwrap();
        assert_eq!(
            q,
            vec![
                Query::Variable {
                    name: "service".into(),
                    selector: r#"up{namespace=~".+"}"#.into(),
                    label: "service".into()
                },
                Query::Panel { panel: "p".into(), expr: r#"rate(x{service=~".+"}[1m])"#.into() },
            ]
        );
    }
}
