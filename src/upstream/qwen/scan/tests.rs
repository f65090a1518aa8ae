use super::frame;
use crate::upstream::wire::Frame;

const FAST: &str = include_str!("../../../../tests/fixtures/qwen/capture_fast_answer.sse");
const THINKING: &str =
    include_str!("../../../../tests/fixtures/qwen/capture_thinking_answer_abridged.txt");

/// Every `data:` payload of the captures.
fn captured() -> Vec<&'static str> {
    FAST.lines()
        .chain(THINKING.lines())
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

/// The scanner either passes (`None`) or reads exactly what serde reads, on its own and
/// after the frame before.
fn agrees(data: &str) {
    crate::fuzzing::frame(data.as_bytes());
}

fn agrees_after(before: &str, data: &str) {
    crate::fuzzing::frame(format!("{before}\n{data}").as_bytes());
}

/// The frame `data` read by the shape of `before`, if it has it.
fn by_shape_of<'a>(before: &str, data: &'a str) -> Option<Frame<'a>> {
    let (f, holes) = super::read(before).expect("a frame the scanner reads");
    super::shape::Shape::of(before, holes, &f)
        .expect("a frame with a shape")
        .read(data)
}

const TOKEN: &str = r#"{"choices": [{"delta": {"role": "assistant", "content": "Hi", "phase": "answer", "status": "typing"}}], "response_id": "r1", "usage": {"input_tokens": 10, "output_tokens": 2, "characters": 0, "output_tokens_details": {"reasoning_tokens": 1, "text_tokens": 1}}, "timestamp": 1780468951}"#;

#[test]
fn the_captured_token_events_take_the_fast_path_and_read_like_serde() {
    let mut fast = 0;
    for data in captured() {
        agrees(data);
        fast += usize::from(frame(data).is_some());
    }
    // All but `response.created` (twice) and the thinking summaries with `extra` (once).
    let all = captured().len();
    assert!(all > 10, "{all} events");
    assert_eq!(fast, all - 3);
}

#[test]
fn what_it_reads() {
    let f = frame(
        r#"{"choices": [{"delta": {"role": "assistant", "content": "Hi", "phase": "answer", "status": "typing"}}], "response_id": "r1", "usage": {"input_tokens": 10, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1, "text_tokens": 1}}, "timestamp": 1780468951}"#,
    )
    .unwrap();
    let d = &f.choices[0].delta;
    assert_eq!(d.content.as_deref(), Some("Hi"));
    assert_eq!(d.role.as_deref(), Some("assistant"));
    assert_eq!(f.response_id.as_deref(), Some("r1"));
    let u = f.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (Some(10), Some(2)));
    assert_eq!(u.output_tokens_details.unwrap().reasoning_tokens, Some(1));
}

#[test]
fn escaped_text_is_decoded_and_borrowed_text_is_not_copied() {
    let data = r#"{"choices":[{"delta":{"content":"a \"b\"\n\\c\/"}}]}"#;
    let f = frame(data).unwrap();
    assert_eq!(f.choices[0].delta.content.as_deref(), Some("a \"b\"\n\\c/"));
    agrees(data);
    let f = frame(r#"{"choices":[{"delta":{"content":"plain"}}]}"#).unwrap();
    assert!(matches!(
        f.choices[0].delta.content,
        Some(std::borrow::Cow::Borrowed("plain"))
    ));
}

#[test]
fn unusual_frames_go_to_serde() {
    for data in [
        // Fields it leaves to serde.
        r#"{"response.created":{"response_id":"r"}}"#,
        r#"{"success": false, "error": {"code": "x"}}"#,
        r#"{"choices":[{"delta":{"extra":{"web_search_info":[]}}}]}"#,
        // Escapes it leaves to serde, in text and in keys.
        r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
        r#"{"timestamp":"\ud800"}"#,
        r#"{"cho\u0069ces":[]}"#,
        // Types serde would reject or read another way.
        r#"{"choices":null}"#,
        r#"{"choices":[{"delta":null}]}"#,
        r#"{"choices":[{"delta":{"phase":{"answer":null}}}]}"#,
        r#"{"choices":[{"delta":{"content":1}}]}"#,
        r#"{"usage":{"output_tokens":1.0}}"#,
        r#"{"usage":{"output_tokens":1e3}}"#,
        r#"{"usage":{"output_tokens":-1}}"#,
        r#"{"usage":{"output_tokens":01}}"#,
        r#"{"usage":{"output_tokens":18446744073709551616}}"#,
        "[]",
        // Repeated fields.
        r#"{"response_id":"a","response_id":"b"}"#,
        r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
        // Not JSON.
        r#"{"choices":[]"#,
        r#"{"choices":[]} x"#,
        r#"{"t":01}"#,
        r#"{"t":1.}"#,
        r#"{"t":-}"#,
        r#"{"t":tru}"#,
        "{\"t\":\"a\u{1}\"}",
        r#"{"t":"\x"}"#,
        r#"{"t":[1,]}"#,
        r#"{"t":{"a":1,}}"#,
        "{,}",
    ] {
        assert!(frame(data).is_none(), "{data}");
    }
    let deep = format!(r#"{{"t":{}{}}}"#, "[".repeat(40), "]".repeat(40));
    assert!(frame(&deep).is_none());
    assert!(serde_json::from_str::<Frame>(&deep).is_ok());
}

#[test]
fn valid_json_it_reads_like_serde() {
    for data in [
        "{}",
        " { } ",
        "{\n\t\"choices\" :\r [ ] }\n",
        r#"{"choices":[{}]}"#,
        r#"{"choices":[{"delta":{}},{"delta":{"content":null,"role":null,"name":"web_search"}}]}"#,
        r#"{"choices":[{"delta":{"phase":"video_gen","status":"queued","extra":null}}]}"#,
        r#"{"choices":[{"delta":{"phase":null,"status":null}}]}"#,
        r#"{"usage":null,"response_id":null}"#,
        r#"{"usage":{"output_tokens_details":null,"prompt_tokens":0,"completion_tokens":7}}"#,
        r#"{"t":[-0.5e+3,0,1E-2,true,false,null,{"a":[{}]},"s\"\\"],"u":{}}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}"#,
        r#"{"choices":[{"delta":{"content":"漢字 😀"}}]}"#,
    ] {
        assert!(frame(data).is_some(), "{data}");
        agrees(data);
    }
}

/// Each captured event with one byte replaced, or cut short, at every position: wherever the
/// scanner takes the fast path, serde reads the same frame.
#[test]
fn damaged_events_never_read_differently() {
    let mut fast = 0usize;
    let mut shaped = 0usize;
    for data in captured() {
        let shape =
            super::read(data).and_then(|(f, holes)| super::shape::Shape::of(data, holes, &f));
        for at in 0..=data.len() {
            if let Some(cut) = data.get(..at) {
                agrees(cut);
            }
            for with in [
                "", " ", "\"", "\\", ",", ":", "{", "}", "[", "]", "0", "-", ".", "e", "n", "\u{1}",
            ] {
                let (Some(head), Some(tail)) = (data.get(..at), data.get(at + 1..)) else {
                    continue;
                };
                let damaged = format!("{head}{with}{tail}");
                agrees_after(data, &damaged);
                fast += usize::from(frame(&damaged).is_some());
                shaped += usize::from(shape.as_ref().is_some_and(|s| s.read(&damaged).is_some()));
            }
        }
    }
    // Many damaged events are still valid frames (a digit for a digit, a space for a space).
    assert!(fast > 1000, "{fast}");
    // Those with a digit for a digit, or other text in a string, keep the shape.
    assert!(shaped > 500, "{shaped}");
}

#[test]
fn the_next_token_event_is_read_by_the_shape_of_the_last() {
    let next = r#"{"choices": [{"delta": {"role": "assistant", "content": "a \"b\"\n\\c\/ é", "phase": "think", "status": "finished"}}], "response_id": "r2", "usage": {"input_tokens": 11, "output_tokens": 31, "characters": -1.5e3, "output_tokens_details": {"reasoning_tokens": 0, "text_tokens": 7}}, "timestamp": 0}"#;
    let f = by_shape_of(TOKEN, next).expect("the same shape");
    let slow: Frame = serde_json::from_str(next).unwrap();
    assert_eq!(format!("{f:?}"), format!("{slow:?}"));
    assert_eq!(
        f.choices[0].delta.content.as_deref(),
        Some("a \"b\"\n\\c/ é")
    );
    assert_eq!(
        f.usage
            .unwrap()
            .output_tokens_details
            .unwrap()
            .reasoning_tokens,
        Some(0)
    );
    assert_eq!(f.response_id.as_deref(), Some("r2"));
    // The same frame again, and the frame itself.
    assert!(by_shape_of(TOKEN, TOKEN).is_some());
    assert!(by_shape_of(next, TOKEN).is_some());
}

#[test]
fn a_frame_of_another_shape_is_read_in_full() {
    let others = [
        // Another key, one more field, one field fewer, other spacing.
        TOKEN.replace("\"role\"", "\"rule\""),
        TOKEN.replace("\"timestamp\"", "\"extra\": 1, \"timestamp\""),
        TOKEN.replace(", \"characters\": 0", ""),
        TOKEN.replace(": ", ":"),
        // A value of another type where the shape has a string or a count.
        TOKEN.replace("\"Hi\"", "null"),
        TOKEN.replace("\"r1\"", "1"),
        TOKEN.replace("\"input_tokens\": 10", "\"input_tokens\": null"),
        TOKEN.replace("\"input_tokens\": 10", "\"input_tokens\": 1.0"),
        TOKEN.replace("\"input_tokens\": 10", "\"input_tokens\": \"10\""),
        TOKEN.replace("\"characters\": 0", "\"characters\": {}"),
        // Cut short, or with more after it.
        TOKEN[..TOKEN.len() - 1].to_owned(),
        format!("{TOKEN} "),
        format!("{TOKEN}}}"),
    ];
    for other in &others {
        assert!(by_shape_of(TOKEN, other).is_none(), "{other}");
        agrees_after(TOKEN, other);
    }
    // Those the scanner reads at all, it reads in full and right.
    let mut scanner = super::Scanner::default();
    assert!(scanner.frame(TOKEN).is_some());
    let read = others.iter().filter(|o| scanner.frame(o).is_some()).count();
    assert_eq!(read, 8);
}

#[test]
fn next_stop_finds_the_first_byte_that_stops_a_string() {
    let stops = (0u8..0x20).chain([b'"', b'\\']);
    for stop in stops {
        for len in 1..=24 {
            for at in 0..len {
                // Plain bytes around the stop, UTF-8 and the neighbours of the stops included.
                let mut bytes: Vec<u8> =
                    b"a!#[]~\x7f\xc3\xa9\x20\x21\x5b\x5d\x23zzzzzzzzzzzzz"[..len].to_vec();
                bytes[at] = stop;
                for from in 0..=at {
                    let got = super::next_stop(&bytes, from);
                    assert_eq!(
                        got,
                        Some(at),
                        "stop {stop:#x} at {at} of {len}, from {from}"
                    );
                }
                // A second stop later on does not hide the first one.
                bytes[len - 1] = b'"';
                assert_eq!(super::next_stop(&bytes, 0), Some(at));
            }
        }
    }
    let plain = "é plain text, 中文, and more".as_bytes();
    for from in 0..=plain.len() {
        assert_eq!(super::next_stop(plain, from), None, "from {from}");
    }
    assert_eq!(super::next_stop(plain, plain.len() + 1), None);
}
