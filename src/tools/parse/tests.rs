use serde_json::json;

use super::*;

fn offered() -> Offered {
    Offered::new([
        (
            "read_file".to_owned(),
            json!({"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}}}),
        ),
        (
            "now".to_owned(),
            json!({"type": "object", "properties": {}}),
        ),
    ])
}

fn call(name: &str, arguments: serde_json::Value) -> Piece {
    let serde_json::Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    Piece::Call(Call {
        name: name.to_owned(),
        arguments,
    })
}

fn text(t: &str) -> Piece {
    Piece::Text(t.to_owned())
}

/// Adjacent text pieces joined: where a stream was cut must not change what it says.
fn joined(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

fn read_in(parts: &[&str]) -> Vec<Piece> {
    let mut parser = Parser::new(offered());
    let mut pieces = Vec::new();
    for part in parts {
        pieces.extend(parser.push(part));
    }
    pieces.extend(parser.finish());
    joined(pieces)
}

/// `answer` read whole, and cut in two at every character boundary, and one character at a
/// time: always the same pieces.
#[track_caller]
fn reads_as(answer: &str, expected: &[Piece]) {
    assert_eq!(read_in(&[answer]), expected, "whole");
    for (at, _) in answer.char_indices().skip(1) {
        let (a, b) = answer.split_at(at);
        assert_eq!(read_in(&[a, b]), expected, "cut at {at}: {a:?} | {b:?}");
    }
    let chars: Vec<String> = answer.chars().map(String::from).collect();
    let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(read_in(&parts), expected, "one character at a time");
}

#[test]
fn text_then_one_call_in_our_syntax() {
    reads_as(
        "Let me look. <q2a:call name=\"read_file\">\n{\"path\": \"src/main.rs\"}\n</q2a:call>",
        &[
            text("Let me look. "),
            call("read_file", json!({"path": "src/main.rs"})),
        ],
    );
}

#[test]
fn two_calls_in_two_blocks_and_in_one_hermes_block() {
    let two = [
        call("read_file", json!({"path": "a"})),
        call("read_file", json!({"path": "b"})),
    ];
    reads_as(
        "<q2a:call name=\"read_file\">{\"path\":\"a\"}</q2a:call><q2a:call name=\"read_file\">{\"path\":\"b\"}</q2a:call>",
        &two,
    );
    reads_as(
        "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"b\"}}\n</tool_call>",
        &two,
    );
    reads_as(
        "<tool_call>[{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}, {\"name\": \"read_file\", \"arguments\": {\"path\": \"b\"}}]</tool_call>",
        &two,
    );
}

#[test]
fn hermes_with_arguments_as_a_string_in_a_fence_with_json_mistakes() {
    reads_as(
        "<tool_call>```json\n{'name': 'read_file', arguments: \"{\\\"path\\\": \\\"x\\\",}\",}\n```</tool_call>",
        &[call("read_file", json!({"path": "x"}))],
    );
}

#[test]
fn qwen_coder_calls_are_typed_by_the_schema() {
    let expected = [call("read_file", json!({"path": "42", "limit": 10}))];
    reads_as(
        "<function=read_file>\n<parameter=path>\n42\n</parameter>\n<parameter=limit>\n10\n</parameter>\n</function>",
        &expected,
    );
    reads_as(
        "<tool_call>\n<function=read_file>\n<parameter=path>\n42\n</parameter>\n<parameter=limit>10</parameter>\n</function>\n</tool_call>",
        &expected,
    );
}

#[test]
fn a_last_block_whose_closing_marker_never_came() {
    reads_as(
        "Reading. <q2a:call name=\"read_file\">{\"path\": \"a\"}",
        &[text("Reading. "), call("read_file", json!({"path": "a"}))],
    );
    reads_as("<tool_call>{\"name\": \"now\"}", &[call("now", json!({}))]);
}

#[test]
fn call_syntax_in_a_code_fence_is_text() {
    let answer = "Write it like this:\n```xml\n<q2a:call name=\"read_file\">{\"path\":\"a\"}</q2a:call>\n```\nDone.";
    reads_as(answer, &[text(answer)]);
    let answer = "~~~\n<tool_call>{\"name\":\"now\"}</tool_call>\n~~~\n";
    reads_as(answer, &[text(answer)]);
}

#[test]
fn a_call_after_a_closed_fence_is_a_call() {
    reads_as(
        "```\ncode\n```\n<q2a:call name=\"now\"></q2a:call>",
        &[text("```\ncode\n```\n"), call("now", json!({}))],
    );
}

#[test]
fn a_tool_that_was_not_offered_is_text() {
    let answer = "<tool_call>{\"name\": \"web_search\", \"arguments\": {}}</tool_call> ok";
    reads_as(answer, &[text(answer)]);
}

#[test]
fn a_block_that_does_not_read_is_broken() {
    let block = "<q2a:call name=\"read_file\">{\"path\": </q2a:call>";
    reads_as(
        &format!("a {block} b"),
        &[text("a "), Piece::Broken(block.to_owned()), text(" b")],
    );
    reads_as(
        "<tool_call>just words</tool_call>",
        &[Piece::Broken(
            "<tool_call>just words</tool_call>".to_owned(),
        )],
    );
}

#[test]
fn text_streams_at_once_but_for_what_could_start_a_marker() {
    let mut parser = Parser::new(offered());
    assert_eq!(
        parser.push("Hello <b>wörld</b> "),
        [text("Hello <b>wörld</b> ")]
    );
    assert_eq!(parser.push("and <q2a:ca"), [text("and ")]);
    assert_eq!(parser.push("t"), [text("<q2a:cat")]);
    assert_eq!(parser.push("\n``"), [text("\n")]);
    assert_eq!(parser.push("x"), [text("``x")]);
    assert_eq!(parser.finish(), []);
}

#[test]
fn our_tag_around_a_hermes_object_and_a_bare_tag() {
    reads_as(
        "<q2a:call name=\"read_file\">{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}</q2a:call>",
        &[call("read_file", json!({"path": "a"}))],
    );
    reads_as(
        "<q2a:call>{\"name\": \"now\", \"arguments\": \"\"}</q2a:call>",
        &[call("now", json!({}))],
    );
}
