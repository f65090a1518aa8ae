use super::*;
use crate::anthropic::MessagesRequest;

fn req(body: serde_json::Value) -> MessagesRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn tool_results_become_tool_messages_in_place() {
    let r = req(serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 10,
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": "read a"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "secret", "signature": "s"},
                {"type": "text", "text": "reading"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true, "content": "gone"},
                {"type": "text", "text": "go on"}
            ]},
            {"role": "system", "content": "late"}
        ]
    }));
    check(&r, 100, true).unwrap();
    let t = to_conversation(&r, Vec::new(), false);
    let roles: Vec<Role> = t.conversation.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User,
            Role::System
        ]
    );
    let assistant = &t.conversation.messages[2];
    assert_eq!(assistant.parts, [Part::Text("reading".into())]);
    assert_eq!(assistant.reasoning, None);
    assert_eq!(
        assistant.tool_calls,
        [ToolCall {
            id: "toolu_1".into(),
            name: "Read".into(),
            arguments: r#"{"file_path":"/a"}"#.into()
        }]
    );
    assert_eq!(
        t.conversation.messages[3].parts,
        [Part::ToolResult(ToolResult {
            call_id: "toolu_1".into(),
            name: None,
            is_error: true,
            content: vec![Part::Text("gone".into())],
        })]
    );
    assert!(t.ignored.is_empty());
}

#[test]
fn options_follow_the_request() {
    let r = req(serde_json::json!({
        "model": "m", "max_tokens": 99, "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "u-1"},
        "tools": [
            {"name": "Bash", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
            {"type": "bash_20250124", "name": "bash"}
        ],
        "tool_choice": {"type": "tool", "name": "Bash", "disable_parallel_tool_use": true},
        "messages": [{"role": "user", "content": "x"}]
    }));
    check(&r, 100, true).unwrap();
    let t = to_conversation(&r, Vec::new(), true);
    let o = &t.conversation.options;
    assert_eq!(
        o.thinking,
        Thinking {
            enabled: Some(true),
            budget: Some(2048)
        }
    );
    assert_eq!(o.max_tokens, Some(99));
    assert_eq!(o.stop, ["END"]);
    assert_eq!(o.session.as_deref(), Some("u-1"));
    assert_eq!(o.chat_type, Some(ChatType::Search));
    assert_eq!(o.tools.len(), 1);
    assert_eq!(o.tools[0].name, "Bash");
    assert_eq!(o.tool_choice, ToolChoice::Named("Bash".into()));
    assert_eq!(o.parallel_tool_calls, Some(false));
    assert_eq!(t.ignored, ["tool type bash_20250124"]);
}

#[test]
fn anthropic_checks() {
    let no_max =
        req(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(
        check(&no_max, 10, true).unwrap_err().message,
        "max_tokens: Field required"
    );
    check(&no_max, 10, false).unwrap();
    let bad_choice = req(serde_json::json!({
        "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "a", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "b"}
    }));
    assert_eq!(
        check(&bad_choice, 10, true).unwrap_err().param.as_deref(),
        Some("tool_choice")
    );
    let nameless = req(serde_json::json!({
        "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"input_schema": {}}]
    }));
    assert_eq!(
        check(&nameless, 10, true).unwrap_err().param.as_deref(),
        Some("tools[0].name")
    );
}

#[test]
fn media_are_listed_in_order_and_taken_in_order() {
    let r = req(serde_json::json!({
        "model": "m", "max_tokens": 1,
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "notes"},
                {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "inline"}]}}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "here"},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
            ]}]}
        ]
    }));
    let refs = media_refs(&r).unwrap();
    assert_eq!(
        refs.iter().map(|r| r.param.as_str()).collect::<Vec<_>>(),
        [
            "messages[0].content[0]",
            "messages[0].content[1]",
            "messages[2].content[0].content[1]"
        ]
    );
    assert_eq!(
        refs[0].source,
        RefSource::Url("data:image/png;base64,AAAA".into())
    );
    assert_eq!(refs[1].source, RefSource::Text("doc".into()));
    assert_eq!(refs[1].filename.as_deref(), Some("notes.txt"));
    let media: Vec<Media> = ["a", "b", "c"]
        .iter()
        .map(|u| Media {
            kind: MediaKind::Image,
            source: crate::conversation::MediaSource::Url((*u).to_owned()),
        })
        .collect();
    let t = to_conversation(&r, media, false);
    let first = &t.conversation.messages[0].parts;
    assert!(
        matches!(&first[0], Part::Media(m) if m.source == crate::conversation::MediaSource::Url("a".into()))
    );
    assert!(matches!(&first[2], Part::Text(t) if t == "inline"));
    let Part::ToolResult(result) = &t.conversation.messages[2].parts[0] else {
        panic!("a tool result")
    };
    assert!(
        matches!(&result.content[1], Part::Media(m) if m.source == crate::conversation::MediaSource::Url("c".into()))
    );
    let bad = req(
        serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
        ]}),
    );
    assert_eq!(
        media_refs(&bad).unwrap_err().param.as_deref(),
        Some("messages[0].content[0].source.type")
    );
}
