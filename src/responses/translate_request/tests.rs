use serde_json::json;

use super::*;

fn request(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

fn translate(v: Value) -> Translated {
    let req = request(v);
    let items = read_items(&input_values(&req), 0).unwrap();
    to_conversation(&req, &items, Vec::new(), None)
}

#[test]
fn a_codex_turn_becomes_one_assistant_message_with_its_calls_and_tool_messages() {
    let t = translate(json!({
        "model": "qwen3.7-plus",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
            {"role": "user", "content": "list files"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "need ls"}],
             "encrypted_content": crate::responses::reasoning::seal("I should run ls")},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Two files."}]},
        ],
    }));
    let m = &t.conversation.messages;
    let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(m[0].joined_text(), "You are Codex.");
    assert_eq!(m[3].reasoning.as_deref(), Some("I should run ls"));
    assert_eq!(m[3].tool_calls.len(), 2);
    assert_eq!(m[3].tool_calls[0].arguments, r#"{"command":["ls"]}"#);
    assert_eq!(m[3].tool_calls[1].name, "apply_patch");
    assert_eq!(
        m[3].tool_calls[1].arguments,
        r#"{"input":"*** Begin Patch\n*** End Patch"}"#
    );
    let CPart::ToolResult(r) = &m[5].parts[0] else {
        panic!("{:?}", m[5]);
    };
    assert_eq!(
        (r.call_id.as_str(), r.name.as_deref()),
        ("call_2", Some("apply_patch"))
    );
    assert_eq!(m[5].joined_text(), "Done!");
    assert_eq!(m[6].joined_text(), "Two files.");
    assert!(t.ignored.is_empty(), "{:?}", t.ignored);
}

#[test]
fn tools_are_flattened_and_named_back() {
    let t = translate(json!({
        "model": "m", "input": "hi",
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": true},
            {"type": "custom", "name": "apply_patch", "description": "Patch files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}},
            {"type": "namespace", "name": "crm", "description": "CRM", "tools": [
                {"type": "function", "name": "find", "parameters": {"type": "object"}}]},
            {"type": "web_search_preview"},
            {"type": "file_search", "vector_store_ids": []},
        ],
        "tool_choice": {"type": "function", "name": "find", "namespace": "crm"},
        "reasoning": {"effort": "minimal", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
    }));
    let o = &t.conversation.options;
    let names: Vec<&str> = o.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["shell", "apply_patch", "crm.find"]);
    assert!(o.tools[0].strict);
    let patch = &o.tools[1];
    assert!(!patch.strict);
    assert_eq!(
        patch.parameters.as_ref().unwrap()["required"],
        json!(["input"])
    );
    assert!(
        patch
            .description
            .as_ref()
            .unwrap()
            .starts_with("Patch files.\n\nThe input is raw text")
    );
    assert!(
        patch
            .description
            .as_ref()
            .unwrap()
            .ends_with("lark grammar:\nstart: patch")
    );
    assert_eq!(
        t.names.get("crm.find"),
        Some(&ToolRef {
            name: "find".into(),
            namespace: Some("crm".into()),
            custom: false
        })
    );
    assert!(t.names.get("apply_patch").unwrap().custom);
    assert_eq!(o.tool_choice, ToolChoice::Named("crm.find".into()));
    assert_eq!(o.chat_type, Some(ChatType::Search));
    assert_eq!(o.thinking.enabled, Some(false));
    assert!(o.reasoning_shown);
    assert!(matches!(o.response_format, ResponseFormat::JsonSchema(_)));
    assert_eq!(t.ignored, ["tool type file_search"]);
}

#[test]
fn checks_name_the_field() {
    let bad = |v: Value| check(&request(v)).unwrap_err();
    assert_eq!(bad(json!({"input": "x"})).param.as_deref(), Some("model"));
    assert_eq!(bad(json!({"model": "m"})).param.as_deref(), Some("input"));
    assert_eq!(
        bad(json!({"model": "m", "input": "x", "background": true})).code,
        "unsupported_parameter"
    );
    assert_eq!(
        bad(json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}))
            .param
            .as_deref(),
        Some("tools[0].name")
    );
    assert!(
        check(&request(
            json!({"model": "m", "previous_response_id": "resp_1"})
        ))
        .is_ok()
    );
    let err = read_items(&[json!({"type": "function_call", "name": "f"})], 2).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("input[2]"));
    assert!(err.message.contains("call_id"), "{}", err.message);
}

#[test]
fn media_are_listed_in_order_with_their_place() {
    let req = request(json!({"model": "m", "input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "input_file", "file_id": "file-1"},
        ]},
        {"type": "function_call_output", "call_id": "c", "output": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]},
    ]}));
    let items = read_items(&input_values(&req), 0).unwrap();
    let refs = media_refs(&items, 0).unwrap();
    let places: Vec<&str> = refs.iter().map(|r| r.param.as_str()).collect();
    assert_eq!(
        places,
        [
            "input[0].content[1]",
            "input[0].content[2]",
            "input[1].output[0]"
        ]
    );
    assert_eq!(refs[1].source, RefSource::FileId("file-1".into()));
}

#[test]
fn a_custom_calls_input_is_read_back_from_its_arguments() {
    assert_eq!(custom_input(r#"{"input":"a\nb"}"#), "a\nb");
    assert_eq!(custom_input("not json"), "not json");
    assert_eq!(custom_input(r#"{"other":1}"#), "");
}
