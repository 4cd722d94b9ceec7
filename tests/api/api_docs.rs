//! `docs/api.md` against the served `GET /openapi.json`: the route table at the top of the page
//! lists exactly the operations of the document, each with the access the document requires
//! (open, any valid token, or one scope), and every route in the table has at least one `curl`
//! example on the page.
//!
//! The table is a Markdown table whose header starts with `| Method and path`. Its first cell
//! holds one or more `` `METHOD /path` `` spans, and its second cell says who may call them, in
//! one of three forms: `open`, `bearer JWT, any scope`, or ``bearer JWT, scope `NAME` ``.
//!
//! An example is a `curl` command in a fenced ```` ```sh ```` (or `bash`, `shell`, `console`)
//! block whose URL is `$BASE/...` (or `http(s)://host/...`). Its method is `-X`/`--request`,
//! else `HEAD` for `-I`, else `POST` when it sends a body (`-d`, `--data*`, `--json`, `-F`),
//! else `GET`; `HEAD` counts for the `GET` route. Its path is matched against the table's
//! routes as the router matches: a `{param}` segment matches any one segment, and a literal
//! segment beats a parameter (so `$BASE/models/experiment` is `GET /models/experiment`, not
//! `GET /models/{version}`). An example that matches no route of the table fails the test too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::helpers::{TestApp, repo};

const DOC: &str = "docs/api.md";

/// The HTTP methods an OpenAPI path item can hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `(METHOD, /path)`, the path as the document writes it (`{param}` placeholders).
type Op = (String, String);

/// Who may call an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    Open,
    AnyToken,
    Scope(String),
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open => write!(f, "open"),
            Access::AnyToken => write!(f, "bearer JWT, any scope"),
            Access::Scope(scope) => write!(f, "bearer JWT, scope `{scope}`"),
        }
    }
}

fn op_name((method, path): &Op) -> String {
    format!("{method} {path}")
}

async fn served_document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200, "GET /openapi.json");
    response.json().await.expect("GET /openapi.json is JSON")
}

/// The access an operation's security requirements give: the operation's `security`, else the
/// document's. No requirement, or an empty one (`{}`), is open; one requirement of a bearer
/// scheme the document defines is a token, with the scopes it lists (none or one).
fn access_in_document(doc: &Value, op: &Op, operation: &Value) -> Result<Access, String> {
    let name = op_name(op);
    let security = operation
        .get("security")
        .or_else(|| doc.get("security"))
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    let requirements = security
        .as_array()
        .ok_or_else(|| format!("{name}: `security` is not an array: {security}"))?;
    if requirements.is_empty()
        || requirements
            .iter()
            .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return Ok(Access::Open);
    }
    let [requirement] = requirements.as_slice() else {
        return Err(format!(
            "{name}: several security requirements, which docs/api.md cannot express: {security}"
        ));
    };
    let requirement = requirement
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| {
            format!("{name}: a security requirement of other than one scheme: {security}")
        })?;
    let (scheme, scopes) = requirement.iter().next().expect("one scheme");
    let definition = &doc["components"]["securitySchemes"][scheme];
    if definition["type"] != "http" || definition["scheme"] != "bearer" {
        return Err(format!(
            "{name}: security scheme `{scheme}` is not an HTTP bearer scheme of the document: {definition}"
        ));
    }
    let scopes: Vec<&str> = scopes
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match scopes.as_slice() {
        [] => Ok(Access::AnyToken),
        [scope] => Ok(Access::Scope((*scope).to_owned())),
        _ => Err(format!(
            "{name}: requires several scopes {scopes:?}, which docs/api.md cannot express"
        )),
    }
}

/// Every operation of the document with its access and operation id.
fn operations_in_document(doc: &Value) -> BTreeMap<Op, (Access, String)> {
    let mut ops = BTreeMap::new();
    let mut problems = Vec::new();
    let paths = doc["paths"].as_object().expect("/openapi.json has `paths`");
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            let op = (method.to_uppercase(), path.clone());
            let id = operation["operationId"].as_str().unwrap_or("").to_owned();
            match access_in_document(doc, &op, operation) {
                Ok(access) => {
                    ops.insert(op, (access, id));
                }
                Err(problem) => problems.push(problem),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    ops
}

/// The route table of docs/api.md: each `METHOD /path` with its access, and the line it is on.
fn route_table(text: &str) -> BTreeMap<Op, (Access, usize)> {
    let mut lines = text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| !l.starts_with("| Method and path"));
    assert!(
        lines.next().is_some(),
        "{DOC}: no route table (a table whose header starts with `| Method and path`)"
    );
    let separator = lines.next().map(|(_, l)| l).unwrap_or_default();
    assert!(
        separator.starts_with("|---") || separator.starts_with("| ---"),
        "{DOC}: the route table's header is not followed by a separator row: {separator:?}"
    );
    let mut table = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, line) in lines.take_while(|(_, l)| l.starts_with('|')) {
        let number = index + 1;
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            problems.push(format!(
                "{DOC}:{number}: a row with fewer than 3 cells: {line}"
            ));
            continue;
        }
        let (ops, auth) = (cells[1], cells[2]);
        let access = match auth {
            "open" => Access::Open,
            "bearer JWT, any scope" => Access::AnyToken,
            _ => match auth
                .strip_prefix("bearer JWT, scope `")
                .and_then(|s| s.strip_suffix('`'))
            {
                Some(scope) if !scope.contains('`') => Access::Scope(scope.to_owned()),
                _ => {
                    problems.push(format!(
                        "{DOC}:{number}: Auth cell {auth:?} is none of `open`, \
                         `bearer JWT, any scope` and ``bearer JWT, scope `NAME` ``"
                    ));
                    continue;
                }
            },
        };
        let spans: Vec<&str> = ops.split('`').skip(1).step_by(2).collect();
        if spans.is_empty() {
            problems.push(format!("{DOC}:{number}: no `METHOD /path` in {ops:?}"));
        }
        for span in spans {
            let parsed = span.split_once(' ').filter(|(method, path)| {
                !method.is_empty()
                    && method.chars().all(|c| c.is_ascii_uppercase())
                    && path.starts_with('/')
                    && !path.contains(char::is_whitespace)
            });
            let Some((method, path)) = parsed else {
                problems.push(format!("{DOC}:{number}: `{span}` is not `METHOD /path`"));
                continue;
            };
            let op = (method.to_owned(), path.to_owned());
            if let Some((_, first)) = table.insert(op, (access.clone(), number)) {
                problems.push(format!(
                    "{DOC}:{number}: {span} is in the route table twice (also line {first})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(!table.is_empty(), "{DOC}: the route table is empty");
    table
}

/// The fenced shell blocks of a Markdown text: each block's text and the line its first line
/// is on.
fn shell_blocks(text: &str) -> Vec<(usize, String)> {
    struct Open {
        first_line: usize,
        fence: String,
        shell: bool,
        body: String,
    }
    let mut blocks = Vec::new();
    let mut current: Option<Open> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if trimmed.starts_with("```") {
                    let ticks = trimmed.chars().take_while(|c| *c == '`').count();
                    let info = trimmed[ticks..].trim();
                    let lang = info.split_whitespace().next().unwrap_or("");
                    current = Some(Open {
                        first_line: index + 2,
                        fence: "`".repeat(ticks),
                        shell: matches!(lang, "sh" | "bash" | "shell" | "console"),
                        body: String::new(),
                    });
                }
            }
            Some(open) => {
                if trimmed.starts_with(open.fence.as_str())
                    && trimmed.trim_end().trim_matches('`').is_empty()
                {
                    if open.shell {
                        blocks.push((open.first_line, std::mem::take(&mut open.body)));
                    }
                    current = None;
                } else {
                    open.body.push_str(line);
                    open.body.push('\n');
                }
            }
        }
    }
    blocks
}

/// The simple commands of a shell text, each as its words (quotes removed, line continuations
/// joined) and the line (within the text, from 0) it starts on. A rough shell reader that is
/// enough for examples: quotes, backslashes, `$(...)`, comments, and `;`, `|`, `&` and newlines
/// between commands.
fn shell_commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut line = 0;
    let mut start = 0;
    let mut chars = text.chars().peekable();
    fn end_word(word: &mut Option<String>, words: &mut Vec<String>) {
        if let Some(w) = word.take() {
            words.push(w);
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => {
                    line += 1;
                    end_word(&mut word, &mut words);
                }
                Some(next) => word.get_or_insert_default().push(next),
                None => {}
            },
            '\'' => {
                let w = word.get_or_insert_default();
                for q in chars.by_ref() {
                    if q == '\n' {
                        line += 1;
                    }
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                w.push(next);
                            }
                        }
                        '\n' => {
                            line += 1;
                            w.push(q);
                        }
                        _ => w.push(q),
                    }
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                let w = word.get_or_insert_default();
                w.push('$');
                let mut depth = 0;
                for q in chars.by_ref() {
                    if q == '\n' {
                        line += 1;
                    }
                    w.push(q);
                    match q {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '#' if word.is_none() => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut words);
                if !words.is_empty() {
                    commands.push((start, std::mem::take(&mut words)));
                }
                line += 1;
                start = line;
            }
            '\n' | ';' | '|' | '&' => {
                end_word(&mut word, &mut words);
                if !words.is_empty() {
                    commands.push((start, std::mem::take(&mut words)));
                }
                if c == '\n' {
                    line += 1;
                }
                start = line;
            }
            c if c.is_whitespace() => end_word(&mut word, &mut words),
            c => word.get_or_insert_default().push(c),
        }
    }
    end_word(&mut word, &mut words);
    if !words.is_empty() {
        commands.push((start, words));
    }
    commands
}

/// The path of a URL word of an example (`$BASE/x`, `${BASE}/x`, `http://host/x`), without
/// query or fragment.
fn url_path(word: &str) -> Option<&str> {
    let rest = if let Some(rest) = word
        .strip_prefix("$BASE")
        .or_else(|| word.strip_prefix("${BASE}"))
    {
        rest
    } else {
        let after_scheme = word
            .strip_prefix("http://")
            .or_else(|| word.strip_prefix("https://"))?;
        &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..]
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    Some(if path.is_empty() { "/" } else { path })
}

/// The method and URL path of a `curl` command's words (after `curl`).
fn curl_request(args: &[String]) -> Result<(String, String), String> {
    let mut method: Option<String> = None;
    let mut head = false;
    let mut body = false;
    let mut urls = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if let Some(long) = word.strip_prefix("--") {
            let (name, value) = long
                .split_once('=')
                .map_or((long, None), |(n, v)| (n, Some(v)));
            match name {
                "request" => {
                    method = value.map(str::to_owned).or_else(|| words.next().cloned());
                }
                "head" => head = true,
                "get" => method = Some("GET".to_owned()),
                "json" | "form" | "upload-file" => body = true,
                n if n.starts_with("data") => body = true,
                _ => {}
            }
        } else if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (i, flag) in short.char_indices() {
                match flag {
                    'X' => {
                        let rest = &short[i + 1..];
                        method = if rest.is_empty() {
                            words.next().cloned()
                        } else {
                            Some(rest.to_owned())
                        };
                        break;
                    }
                    'I' => head = true,
                    'G' => method = Some("GET".to_owned()),
                    'd' | 'F' | 'T' => {
                        body = true;
                        break;
                    }
                    _ => {}
                }
            }
        } else if let Some(path) = url_path(word) {
            urls.push(path.to_owned());
        }
    }
    let [path] = urls.as_slice() else {
        return Err(format!(
            "{} URLs (`$BASE/...` or `http://host/...`) where one was expected",
            urls.len()
        ));
    };
    let method = method.unwrap_or_else(|| {
        if head {
            "HEAD"
        } else if body {
            "POST"
        } else {
            "GET"
        }
        .to_owned()
    });
    let method = match method.to_uppercase().as_str() {
        "HEAD" => "GET".to_owned(),
        m => m.to_owned(),
    };
    Ok((method, path.clone()))
}

/// The route of `routes` a concrete request reaches, as the router matches: same method, same
/// number of segments, each literal segment equal and each `{param}` segment non-empty; of
/// several, the one whose first differing segment is a literal.
fn route_of<'a>(routes: impl Iterator<Item = &'a Op>, method: &str, path: &str) -> Option<&'a Op> {
    let segments: Vec<&str> = path.split('/').collect();
    routes
        .filter(|(m, _)| m == method)
        .filter_map(|op| {
            let template: Vec<&str> = op.1.split('/').collect();
            if template.len() != segments.len() {
                return None;
            }
            let mut literal = Vec::with_capacity(template.len());
            for (t, s) in template.iter().zip(&segments) {
                if t.starts_with('{') && t.ends_with('}') {
                    if s.is_empty() {
                        return None;
                    }
                    literal.push(false);
                } else if t == s {
                    literal.push(true);
                } else {
                    return None;
                }
            }
            Some((literal, op))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, op)| op)
}

fn api_md() -> String {
    std::fs::read_to_string(repo().join(DOC)).unwrap_or_else(|e| panic!("{DOC}: {e}"))
}

#[tokio::test]
async fn the_route_table_lists_every_operation_of_the_served_document_with_its_access() {
    let app = TestApp::spawn().await;
    let doc = served_document(&app).await;
    app.stop().await;
    let served = operations_in_document(&doc);
    let table = route_table(&api_md());

    let mut problems = Vec::new();
    for (op, (access, line)) in &table {
        match served.get(op) {
            None => problems.push(format!(
                "{DOC}:{line}: {} is in the route table, but GET /openapi.json has no such operation",
                op_name(op)
            )),
            Some((served_access, id)) if served_access != access => problems.push(format!(
                "{DOC}:{line}: {} (operation `{id}`): the route table says \"{access}\", \
                 GET /openapi.json requires \"{served_access}\"",
                op_name(op)
            )),
            Some(_) => {}
        }
    }
    for (op, (access, id)) in &served {
        if !table.contains_key(op) {
            problems.push(format!(
                "{} (operation `{id}`, {access}) is in GET /openapi.json but not in the route \
                 table of {DOC}",
                op_name(op)
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_route_in_the_table_has_a_curl_example() {
    let text = api_md();
    let table = route_table(&text);
    let mut examples: BTreeMap<&Op, Vec<usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (first_line, block) in shell_blocks(&text) {
        for (offset, words) in shell_commands(&block) {
            let Some(at) = words.iter().position(|w| w == "curl") else {
                continue;
            };
            let line = first_line + offset;
            match curl_request(&words[at + 1..]) {
                Err(why) => problems.push(format!("{DOC}:{line}: a curl example with {why}")),
                Ok((method, path)) => match route_of(table.keys(), &method, &path) {
                    Some(op) => examples.entry(op).or_default().push(line),
                    None => problems.push(format!(
                        "{DOC}:{line}: the curl example {method} {path} reaches no route of the \
                         route table"
                    )),
                },
            }
        }
    }
    for (op, (_, line)) in &table {
        if !examples.contains_key(op) {
            problems.push(format!(
                "{DOC}:{line}: {} has no curl example (a ```sh block with `curl ... $BASE{}`)",
                op_name(op),
                op.1
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_example_reader_finds_method_and_route() {
    let routes: BTreeSet<Op> = [
        ("GET", "/models/{version}"),
        ("GET", "/models/experiment"),
        ("PUT", "/models/experiment"),
        ("GET", "/v2"),
        ("POST", "/get-online-features"),
        ("POST", "/push"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    let block = r#"export TOKEN=$(titanic token --sub me --scopes predict)
curl -s $BASE/models/experiment -H "Authorization: Bearer $TOKEN"   # the experiment
curl -s $BASE/models/v2 | jq .
# curl -s $BASE/commented/out
curl -s -X PUT "$BASE/models/experiment" \
  -H 'Content-Type: application/json' \
  -d '{"kind":"shadow",
       "candidate":"v2"}'
curl -sI ${BASE}/v2?x=1
curl -s -o /dev/null -w '%{http_code}\n' $BASE/push -d '{}'
curl -s http://127.0.0.1:8080/get-online-features --data-binary @body.json
"#;
    let found: Vec<(usize, Option<String>)> = shell_commands(block)
        .into_iter()
        .filter_map(|(line, words)| {
            let at = words.iter().position(|w| w == "curl")?;
            let (method, path) = curl_request(&words[at + 1..]).unwrap();
            Some((line, route_of(routes.iter(), &method, &path).map(op_name)))
        })
        .collect();
    let expected: Vec<(usize, Option<String>)> = vec![
        (1, Some("GET /models/experiment".into())),
        (2, Some("GET /models/{version}".into())),
        (4, Some("PUT /models/experiment".into())),
        (8, Some("GET /v2".into())),
        (9, Some("POST /push".into())),
        (10, Some("POST /get-online-features".into())),
    ];
    assert_eq!(found, expected);
}
