//! `/metrics` content negotiation. prometheus-client writes OpenMetrics;
//! tools that read the Prometheus text format 0.0.4 (`promtool check
//! metrics`, older scrapers) expect counters' HELP and TYPE under the
//! sample name ending in `_total`, and no `# EOF`.

use std::collections::HashSet;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Picks the format the way client_golang's promhttp does: OpenMetrics
/// only when the client asks for it, the 0.0.4 text format otherwise.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            // q=0 means "not acceptable".
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| p.replace(' ', "") == "q=0")
        })
    })
}

/// Rewrites prometheus-client's OpenMetrics text into the 0.0.4 format.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_promhttp() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
    }

    #[test]
    fn counters_take_their_total_name_and_eof_goes() {
        let om = "# HELP a_calls Calls.\n# TYPE a_calls counter\na_calls_total{k=\"v\"} 1\n\
                  # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP a_calls_total Calls.\n# TYPE a_calls_total counter\na_calls_total{k=\"v\"} 1\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
    }
}
