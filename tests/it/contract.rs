//! The OpenAPI document is the contract: property checks in the manner of
//! schemathesis, run over `/api/openapi.json` against the real server.
//! For every operation, requests are generated from the document (valid
//! values, boundary values, wrong types, unknown fields, control
//! characters, malformed JSON, no API key), from a fixed seed so a failure
//! repeats. Every answer must be:
//!
//! - not a server error;
//! - a status the document lists for that operation;
//! - for errors, Herald's JSON error envelope, whose `field` (if any) names
//!   something the operation takes;
//! - for successes with a JSON schema, a body with the schema's required
//!   properties, of the declared types.

use serde_json::{json, Map, Value};

use crate::support::*;

/// Requests per operation (bounded: the suite's time budget). Set
/// `HERALD_CONTRACT_CASES` for a longer hunt, `HERALD_CONTRACT_SEED` for
/// other requests.
fn cases() -> usize {
    std::env::var("HERALD_CONTRACT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Strings a field might get: plausible, boundary and hostile.
const STRINGS: &[&str] = &[
    "+14153234567",
    "+1 415 323 4567",
    "whatsapp:+14153234567",
    "ana@example.com",
    "sms",
    "email",
    "whatsapp",
    "pending",
    "failed",
    "en",
    "pt-BR",
    "Your order #42 is ready",
    "2026-12-01T09:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "HX0123456789abcdef0123456789abcdef",
    "",
    " ",
    "0",
    "-1",
    "null",
    "a\u{0}b",
    "bell\u{7}",
    "line\r\nBcc: x@evil.example",
    "{{ 'x' * 10 }}",
    "{% for %}",
    "ünïcödé ✓ 🚀",
    "'; DROP TABLE notification_messages; --",
    "../../etc/passwd",
];

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn types_of(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

/// A value for `schema`: usually of its type, sometimes not.
fn value_for(rng: &mut Rng, doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if let Some(values) = schema["enum"].as_array() {
        if rng.chance(80) {
            return rng.pick(values).clone();
        }
    }
    if rng.chance(8) {
        // The wrong type.
        return rng
            .pick(&[
                json!(null),
                json!(17),
                json!(true),
                json!([1]),
                json!({"x": 1}),
                json!("text"),
            ])
            .clone();
    }
    let types = types_of(schema);
    let t = types
        .iter()
        .find(|t| *t != "null")
        .cloned()
        .unwrap_or_else(|| "string".into());
    match t.as_str() {
        "integer" => {
            let (min, max) = (schema["minimum"].as_i64(), schema["maximum"].as_i64());
            let mut pool = vec![0, 1, 2, 50, -1, i64::MAX, i64::MIN];
            pool.extend(min.iter().flat_map(|m| [*m, m - 1]));
            pool.extend(max.iter().flat_map(|m| [*m, m + 1]));
            json!(*rng.pick(&pool))
        }
        "number" => json!(*rng.pick(&[0.0, 1.5, -2.25, 1e300])),
        "boolean" => json!(rng.chance(50)),
        "array" => {
            let n = if depth > 1 { 0 } else { rng.below(4) };
            Value::Array(
                (0..n)
                    .map(|_| value_for(rng, doc, &schema["items"], depth + 1))
                    .collect(),
            )
        }
        "object" => object_for(rng, doc, schema, depth + 1),
        _ => {
            if schema["format"] == "date-time" && rng.chance(60) {
                json!(rng.pick(&[
                    "2026-12-01T09:00:00Z",
                    "1970-01-01T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                    "1969-12-31T23:59:59Z",
                    "soon"
                ]))
            } else if rng.chance(3) {
                json!("x".repeat(2000 + rng.below(100)))
            } else {
                json!(rng.pick(STRINGS))
            }
        }
    }
}

fn object_for(rng: &mut Rng, doc: &Value, schema: &Value, depth: usize) -> Value {
    let mut out = Map::new();
    if let Some(props) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, prop) in props {
            if required.contains(&name.as_str()) && rng.chance(90) || rng.chance(45) {
                out.insert(name.clone(), value_for(rng, doc, prop, depth));
            }
        }
    } else if depth < 3 {
        for _ in 0..rng.below(3) {
            out.insert(
                rng.pick(&["k", "order", "name", "n"]).to_string(),
                json!(rng.pick(STRINGS)),
            );
        }
    }
    if rng.chance(5) {
        out.insert("unexpected_field".into(), json!(1));
    }
    Value::Object(out)
}

/// Percent-encode a path or query value.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// What an answer may carry in `field`: the operation's parameters and
/// body properties (and paths into them, like `messages[1].body`).
fn known_fields(doc: &Value, op: &Value) -> Vec<String> {
    let mut names: Vec<String> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    fn props(doc: &Value, schema: &Value, names: &mut Vec<String>, depth: usize) {
        let schema = resolve(doc, schema);
        if let Some(p) = schema["properties"].as_object() {
            for (k, v) in p {
                names.push(k.clone());
                if depth < 3 {
                    props(doc, v, names, depth + 1);
                    props(doc, &v["items"], names, depth + 1);
                }
            }
        }
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for media in content.values() {
            props(doc, &media["schema"], &mut names, 0);
        }
    }
    names.push("Idempotency-Key".into());
    names
}

fn check_type(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let types = types_of(schema);
    if types.is_empty() {
        return Ok(());
    }
    let ok = types.iter().any(|t| match t.as_str() {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    });
    if !ok {
        return Err(format!("{at}: {v} is not {types:?}"));
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for r in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                return Err(format!("{at}: required property {r} missing in {v}"));
            }
        }
        for (k, p) in props {
            if let Some(x) = obj.get(k) {
                check_type(doc, p, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate().take(5) {
            check_type(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

async fn run_contract(db: TestDb, seed: u64) {
    let app = spawn_app_with(
        &db,
        &[KEY],
        &[
            ("PUBLIC_URL", "https://h.example"),
            ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
        ],
    )
    .await;
    // Something to find: a message, a template, a suppression.
    let (s, m) = json_of(
        app.post("/api/messages")
            .json(&json!({"channel": "sms", "recipient": "+14153234567", "body": "hi"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{m}");
    let id = m["id"].as_i64().unwrap();
    app.put("/api/templates/receipt")
        .json(&json!({"body": "Hi {{ name }}"}))
        .send()
        .await
        .unwrap();
    let doc: Value = app.get("/api/openapi.json").send().await.unwrap().json().await.unwrap();
    let seed = std::env::var("HERALD_CONTRACT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(seed);
    let mut rng = Rng(seed);
    let mut problems = Vec::new();
    let mut requests = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let declared = known_fields(&doc, op);
            for case in 0..cases() {
                // A field the request itself brought (an unknown one) may be named too.
                let mut fields = declared.clone();
                // Path and query from the parameters.
                let mut url_path = path.clone();
                let mut query = Vec::new();
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    let value = match p["in"].as_str() {
                        Some("path") => {
                            let v = if name == "id" && rng.chance(60) {
                                json!(*rng.pick(&[id, id + 1000, 0]))
                            } else if name == "name" && rng.chance(50) {
                                json!("receipt")
                            } else {
                                value_for(&mut rng, &doc, &p["schema"], 0)
                            };
                            let text = match &v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            let text = if text.is_empty() { "x".into() } else { text };
                            url_path = url_path.replace(&format!("{{{name}}}"), &encode(&text));
                            continue;
                        }
                        Some("query") if rng.chance(50) => value_for(&mut rng, &doc, &p["schema"], 0),
                        _ => continue,
                    };
                    let text = match &value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    query.push(format!("{}={}", encode(name), encode(&text)));
                }
                if rng.chance(3) {
                    query.push("unknown_param=1".into());
                    fields.push("unknown_param".into());
                }
                let url = if query.is_empty() {
                    format!("{}{url_path}", app.url)
                } else {
                    format!("{}{url_path}?{}", app.url, query.join("&"))
                };
                let mut req = app.http.request(method.to_uppercase().parse().unwrap(), &url);
                if path.starts_with("/api/") && rng.chance(95) {
                    req = req.bearer_auth(KEY);
                }
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    let (media, spec) = content.iter().next().unwrap();
                    let body = match rng.below(20) {
                        0 => "{not json".to_owned(),
                        1 => "[]".to_owned(),
                        _ => {
                            let v = value_for(&mut rng, &doc, &spec["schema"], 0);
                            fn keys(v: &Value, out: &mut Vec<String>) {
                                match v {
                                    Value::Object(m) => m.iter().for_each(|(k, x)| {
                                        out.push(k.clone());
                                        keys(x, out);
                                    }),
                                    Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
                                    _ => {}
                                }
                            }
                            keys(&v, &mut fields);
                            v.to_string()
                        }
                    };
                    let content_type = if rng.chance(5) { "text/plain" } else { media.as_str() };
                    req = req.header("content-type", content_type).body(body);
                }
                if rng.chance(10) {
                    req = req.header("Idempotency-Key", format!("k-{}", rng.below(3)));
                }
                let resp = req.send().await.unwrap();
                requests += 1;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let text = resp.text().await.unwrap();
                let what = format!("{} {url} (case {case})", method.to_uppercase());
                if status >= 500 {
                    problems.push(format!("{what}: server error {status}: {text}"));
                    continue;
                }
                let responses = &op["responses"];
                let Some(documented) = responses.get(status.to_string()).or_else(|| responses.get("default")) else {
                    problems.push(format!("{what}: status {status} is not documented ({text})"));
                    continue;
                };
                if status >= 400 {
                    let body: Value = match serde_json::from_str(&text) {
                        Ok(v) if content_type.starts_with("application/json") => v,
                        _ => {
                            problems.push(format!("{what}: {status} is not a JSON error ({content_type}): {text}"));
                            continue;
                        }
                    };
                    if !(body["error"]["code"].is_string() && body["error"]["message"].is_string()) {
                        problems.push(format!("{what}: {status} without the error envelope: {text}"));
                    }
                    if let Some(f) = body["error"]["field"].as_str() {
                        let head = f.split(['[', '.']).next().unwrap_or(f);
                        if !fields.iter().any(|k| k == head) {
                            problems.push(format!(
                                "{what}: {status} names field {f:?}, which this operation does not take ({fields:?})"
                            ));
                        }
                    }
                } else if let Some(schema) = documented["content"]["application/json"]["schema"].as_object() {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(v) => {
                            if let Err(e) = check_type(&doc, &Value::Object(schema.clone()), &v, "body") {
                                problems.push(format!("{what}: {status} body does not match the document: {e}"));
                            }
                        }
                        Err(_) => problems.push(format!("{what}: {status} body is not JSON: {text}")),
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} of {requests} requests broke the contract:\n{}",
        problems.len(),
        problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{requests} generated requests (seed {seed}) kept the contract");
}

every_backend! {
    async fn the_server_does_what_its_openapi_document_says(db: TestDb) {
        run_contract(db, 0x5EED_0001).await;
    }
}

#[test]
fn the_document_names_what_is_required_and_allowed() {
    let doc = serde_json::to_value(herald::http::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let message = &schemas["MessageRequest"];
    assert_eq!(message["required"], json!(["channel", "recipient"]), "{message}");
    assert_eq!(
        message["properties"]["channel"]["enum"],
        json!(["sms", "whatsapp", "email"])
    );
    assert_eq!(message["properties"]["send_at"]["format"], "date-time");
    assert!(
        schemas["PreviewRequest"]["required"].is_null(),
        "preview's data is optional"
    );
    let list = &doc["paths"]["/api/messages"]["get"]["parameters"];
    let param = |name: &str| list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone();
    assert_eq!(
        param("status")["enum"],
        json!(["pending", "processing", "sent", "failed", "cancelled"])
    );
    assert_eq!(
        (param("limit")["minimum"].as_f64(), param("limit")["maximum"].as_f64()),
        (Some(1.0), Some(1000.0))
    );
    // Every operation documents the errors every route can give.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for code in ["400", "503"] {
                assert!(
                    op["responses"].get(code).is_some(),
                    "{method} {path} does not document {code}"
                );
            }
            if op.get("requestBody").is_some() && path.starts_with("/api/") {
                for code in ["413", "415", "422"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} does not document {code}"
                    );
                }
            }
        }
    }
}
