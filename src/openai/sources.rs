//! Renders web-search sources as markdown, per `SEARCH_INFO_MODE`.

use std::fmt::Write as _;

use crate::config::SearchInfoMode;
use crate::conversation::Source;

/// The block to show for `sources`, numbered from `first_index`; empty when none has a URL.
pub fn render(mode: SearchInfoMode, sources: &[Source], first_index: usize) -> String {
    let rows: Vec<(String, String, String)> = sources
        .iter()
        .filter_map(|s| {
            let url = Some(s.url.trim()).filter(|u| !u.is_empty())?;
            let host = s
                .hostname
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map_or_else(|| host_of(url), str::to_owned);
            let title = s
                .title
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .unwrap_or(url);
            Some((
                clean(title),
                url.replace(' ', "%20").replace(')', "%29"),
                clean(&host),
            ))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if mode == SearchInfoMode::Table {
        out.push_str("| # | Source | Site |\n|---|---|---|\n");
    }
    for (i, (title, url, host)) in rows.iter().enumerate() {
        let n = first_index + i;
        match mode {
            SearchInfoMode::Table => writeln!(out, "| {n} | [{title}]({url}) | {host} |"),
            SearchInfoMode::Text => writeln!(out, "[{n}] [{title}]({url}) | {host}"),
        }
        .expect("writing to a String cannot fail");
    }
    out.push('\n');
    out
}

/// Keeps a title or host from breaking the markdown around it.
fn clean(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
        .replace('|', "\\|")
        .replace('[', "\\[")
        .replace(']', "\\]")
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(url: &str, title: &str, host: &str) -> Source {
        Source {
            url: url.into(),
            title: Some(title.into()),
            hostname: Some(host.into()),
        }
    }

    #[test]
    fn table_and_text() {
        let s = [
            info("https://a.com/x", "A | b", "a.com"),
            info("https://b.org/", "", ""),
        ];
        assert_eq!(
            render(SearchInfoMode::Table, &s, 1),
            "| # | Source | Site |\n|---|---|---|\n| 1 | [A \\| b](https://a.com/x) | a.com |\n\
             | 2 | [https://b.org/](https://b.org/) | b.org |\n\n"
        );
        assert_eq!(
            render(SearchInfoMode::Text, &s, 1),
            "[1] [A \\| b](https://a.com/x) | a.com\n[2] [https://b.org/](https://b.org/) | b.org\n\n"
        );
        assert_eq!(render(SearchInfoMode::Text, &[Source::default()], 1), "");
    }
}
