//! Property-test strategies shared by the binaries' tests.

use proptest::prelude::*;

/// Values a hand-edited or hostile settings file may hold where a good one has a value:
/// zero and negative durations, huge numbers, empty strings and lists, broken PromQL and
/// URLs, wrong types; and any short text.
fn bad_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "\"0s\"",
            "\"-1s\"",
            "\"999999999999h\"",
            "0",
            "-5",
            "1e308",
            "-1e308",
            "nan",
            "inf",
            "\"\"",
            "\"s3://\"",
            "true",
            "[]",
            "[\"\"]",
            "{}",
            "\"sum(\"",
            "\"/\"",
            "18446744073709551615",
            "9223372036854775807",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,12}".prop_map(|t| format!("{t:?}")),
    ]
}

/// `good` (a TOML settings file) with one `key = value` line's value replaced by a bad
/// one, and maybe an unknown key added at the top: what a property test loads, expecting
/// the settings or a refusal naming what is wrong, never a panic.
pub fn edited_toml(good: &'static str) -> impl Strategy<Value = String> {
    let lines = good.lines().count().max(1);
    (0..lines, bad_value(), proptest::option::of(("[a-z_]{1,12}", "[0-9]{1,4}"))).prop_map(move |(at, value, extra)| {
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        if let Some((key, _)) = lines[at].clone().split_once(" = ") {
            lines[at] = format!("{key} = {value}");
        }
        if let Some((key, v)) = extra {
            lines.insert(0, format!("{key} = {v}"));
        }
        lines.join("\n")
    })
}
