//! Image and video sizes: OpenAI pixel sizes and ratio tags in prompts, mapped to the five
//! aspect ratios chat.qwen.ai accepts (docs/upstream.md §9.1).

/// The ratios chat.qwen.ai accepts, with width / height.
const RATIOS: [(&str, f64); 5] = [
    ("1:1", 1.0),
    ("4:3", 4.0 / 3.0),
    ("3:4", 3.0 / 4.0),
    ("16:9", 16.0 / 9.0),
    ("9:16", 9.0 / 16.0),
];

/// A `size` that is neither a pixel size, one of the five ratios, nor `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported size: use WIDTHxHEIGHT, one of 1:1 4:3 3:4 16:9 9:16, or auto")]
pub struct BadSize;

/// OpenAI pixel sizes: 1024x1024→1:1, 1536x1024→4:3, 1024x1536→3:4, 1792x1024→16:9, 1024x1792→9:16, 512x512/256x256→1:1,
/// any other WxH (also `W*H`) → the nearest of the five ratios by aspect; a ratio string among the five passes through; "auto" → None; anything else → Err.
/// An empty or blank size is treated like `auto`.
/// The ratio a generation asks for: `size` when given (an error when it maps to none of ours),
/// else a ratio keyword in the prompt.
pub fn requested_ratio(size: Option<&str>, prompt: &str) -> Result<Option<&'static str>, BadSize> {
    let from_size = match size {
        Some(s) => ratio_for_size(s)?,
        None => None,
    };
    Ok(from_size.or_else(|| ratio_in_prompt(prompt)))
}

pub fn ratio_for_size(size: &str) -> Result<Option<&'static str>, BadSize> {
    let size = size.trim();
    if size.is_empty() || size.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if let Some(&(ratio, _)) = RATIOS.iter().find(|(r, _)| *r == size) {
        return Ok(Some(ratio));
    }
    let (w, h) = size.split_once(['x', 'X', '*', '×']).ok_or(BadSize)?;
    let dim = |s: &str| {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadSize);
        }
        s.parse::<u32>().ok().filter(|&n| n > 0).ok_or(BadSize)
    };
    let (w, h) = (dim(w)?, dim(h)?);
    Ok(Some(nearest_ratio(f64::from(w) / f64::from(h))))
}

/// The ratio closest in log space, so that 2:1 and 1:2 are judged alike.
fn nearest_ratio(aspect: f64) -> &'static str {
    let target = aspect.ln();
    let mut best = RATIOS[0];
    for candidate in RATIOS {
        if (candidate.1.ln() - target).abs() < (best.1.ln() - target).abs() {
            best = candidate;
        }
    }
    best.0
}

/// A ratio keyword in a prompt: `16:9`, `@4:3`, full-width colon `16：9` → the ratio; the last match wins; only the five ratios.
pub fn ratio_in_prompt(prompt: &str) -> Option<&'static str> {
    let chars: Vec<char> = prompt.chars().collect();
    let mut found = None;
    for (i, &c) in chars.iter().enumerate() {
        if !is_colon(c) {
            continue;
        }
        let start = chars[..i]
            .iter()
            .rposition(|&c| digit(c).is_none())
            .map_or(0, |p| p + 1);
        let end = chars[i + 1..]
            .iter()
            .position(|&c| digit(c).is_none())
            .map_or(chars.len(), |p| i + 1 + p);
        // Part of a longer chain such as a clock time `10:16:9` is not a ratio.
        let before = start.checked_sub(1).map(|p| chars[p]);
        if start == i || end == i + 1 || before.is_some_and(is_colon) {
            continue;
        }
        if chars.get(end).copied().is_some_and(is_colon) {
            continue;
        }
        let left: String = chars[start..i].iter().filter_map(|&c| digit(c)).collect();
        let right: String = chars[i + 1..end].iter().filter_map(|&c| digit(c)).collect();
        let tag = format!("{left}:{right}");
        if let Some(&(ratio, _)) = RATIOS.iter().find(|(r, _)| *r == tag) {
            found = Some(ratio);
        }
    }
    found
}

fn is_colon(c: char) -> bool {
    c == ':' || c == '：'
}

/// An ASCII or full-width digit, as its ASCII form.
fn digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '０'..='９' => char::from_u32(u32::from(c) - u32::from('０') + u32::from('0')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_sizes() {
        for (size, ratio) in [
            ("1024x1024", "1:1"),
            ("1536x1024", "4:3"),
            ("1024x1536", "3:4"),
            ("1792x1024", "16:9"),
            ("1024x1792", "9:16"),
            ("512x512", "1:1"),
            ("256x256", "1:1"),
        ] {
            assert_eq!(ratio_for_size(size), Ok(Some(ratio)), "{size}");
        }
    }

    #[test]
    fn other_pixel_sizes_take_the_nearest_ratio() {
        for (size, ratio) in [
            ("1024*768", "4:3"),
            ("768*1024", "3:4"),
            ("1280*720", "16:9"),
            ("720*1280", "9:16"),
            ("1920X1080", "16:9"),
            ("3000x1000", "16:9"),
            ("1000x3000", "9:16"),
            ("1100x1000", "1:1"),
            ("1200x1000", "4:3"),
            (" 640 x 480 ", "4:3"),
            ("800×800", "1:1"),
        ] {
            assert_eq!(ratio_for_size(size), Ok(Some(ratio)), "{size}");
        }
    }

    #[test]
    fn ratio_strings_and_auto() {
        for r in ["1:1", "4:3", "3:4", "16:9", "9:16"] {
            assert_eq!(ratio_for_size(r), Ok(Some(r)));
        }
        assert_eq!(ratio_for_size("auto"), Ok(None));
        assert_eq!(ratio_for_size("AUTO"), Ok(None));
        assert_eq!(ratio_for_size(""), Ok(None));
    }

    #[test]
    fn anything_else_is_an_error() {
        for s in [
            "21:9",
            "large",
            "1024",
            "0x1024",
            "1024x0",
            "x1024",
            "-5x10",
            "1.5x1",
            "1024x1024x2",
            "99999999999x1",
        ] {
            assert_eq!(ratio_for_size(s), Err(BadSize), "{s}");
        }
    }

    #[test]
    fn ratio_tags_in_prompts() {
        assert_eq!(ratio_in_prompt("a cat, 16:9"), Some("16:9"));
        assert_eq!(ratio_in_prompt("a cat @4:3"), Some("4:3"));
        assert_eq!(ratio_in_prompt("一只猫 16：9"), Some("16:9"));
        assert_eq!(ratio_in_prompt("一只猫 ９：１６"), Some("9:16"));
        assert_eq!(ratio_in_prompt("16:9 no wait 3:4 please"), Some("3:4"));
        assert_eq!(ratio_in_prompt("1:1"), Some("1:1"));
        assert_eq!(ratio_in_prompt("(9:16)"), Some("9:16"));
    }

    #[test]
    fn no_ratio_in_prompt() {
        assert_eq!(ratio_in_prompt(""), None);
        assert_eq!(ratio_in_prompt("a cat"), None);
        assert_eq!(ratio_in_prompt("21:9 cinema"), None);
        assert_eq!(ratio_in_prompt("at 116:9"), None);
        assert_eq!(ratio_in_prompt("at 16:90"), None);
        assert_eq!(ratio_in_prompt("meet at 3:45"), None);
        assert_eq!(ratio_in_prompt("at 10:16:9"), None);
        assert_eq!(ratio_in_prompt("1:1:30"), None);
        assert_eq!(ratio_in_prompt(":16:"), None);
        assert_eq!(ratio_in_prompt("ratio: 9"), None);
        // A later non-ratio does not undo an earlier ratio.
        assert_eq!(ratio_in_prompt("4:3 at 12:30"), Some("4:3"));
    }
}
