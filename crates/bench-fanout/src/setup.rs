//! Setting a server up for a run: accounts, the group, and one socket per member.

use super::*;

/// One HTTP/1.1 request to the server at `base` (`http://host:port`) on a connection of
/// its own: the JSON answer of a 2xx, an error otherwise.
pub(crate) async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let bearer =
        token.map(|token| format!("authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{bearer}\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("a malformed answer")?;
    let status: u16 = head.get(9..12).and_then(|code| code.parse().ok()).context("no status")?;
    if !(200..300).contains(&status) {
        bail!("{method} {path} answered {status}: {body}");
    }
    Ok(serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `http://host:port` as `ws://host:port`.
pub(crate) fn ws_base(url: &str) -> String {
    url.trim_end_matches('/').replacen("http://", "ws://", 1)
}

/// Registers `members` accounts, signs them in, puts them in one group and connects and
/// subscribes one socket each.
///
/// Password hashing is the cost of registering: the caller lowers xcore's argon2
/// parameters through `[auth.password]` for the benchmark, and accounts are registered
/// `CONCURRENCY` at a time.
pub(crate) async fn setup_xcore(kind: Kind, url: &str, pid: u32, members: usize) -> Result<Target> {
    // Each kind has accounts and a group of its own, should two share a server.
    let prefix = kind.name();
    let base = url.trim_end_matches('/').to_owned();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..members {
        let (base, permits) = (base.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let account = json!({
                "email": format!("{prefix}-fanout{index}@example.com"),
                "password": format!("fanout password {index}"),
            });
            call(&base, "POST", "/auth/register", None, Some(&account)).await?;
            let login = call(&base, "POST", "/auth/login", None, Some(&account)).await?;
            let token = login["access_token"].as_str().context("no access_token")?.to_owned();
            let me = call(&base, "GET", "/messaging/me", Some(&token), None).await?;
            let id = match &me["user"]["id"] {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            };
            anyhow::Ok((index, token, id))
        });
    }
    let mut accounts = vec![(String::new(), String::new()); members];
    while let Some(joined) = tasks.join_next().await {
        let (index, token, id) = joined??;
        accounts[index] = (token, id);
    }
    let (tokens, ids): (Vec<String>, Vec<String>) = accounts.into_iter().unzip();
    let owner = tokens.first().context("--members must be at least 1")?;
    let body = json!({"name": "fanout", "members": &ids[1..]});
    let group = call(&base, "POST", "/messaging/groups", Some(owner), Some(&body)).await?;
    let conversation = group["id"].as_i64().context("the new group has no id")?;
    let mut target = Target::new(kind, url, pid, tokens, conversation, members);
    connect_members(&mut target).await?;
    Ok(target)
}

/// Connects `members` sockets to the Socket.IO peer and has each join the room.
pub(crate) async fn setup_socketio(url: &str, pid: u32, members: usize) -> Result<Target> {
    let mut target = Target::new(Kind::SocketIo, url, pid, Vec::new(), 0, members);
    connect_members(&mut target).await?;
    Ok(target)
}

/// Opens and subscribes every member's socket; member 0's becomes the sender's.
pub(crate) async fn connect_members(target: &mut Target) -> Result<()> {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..target.members {
        let (kind, ws, permits) = (target.kind, target.ws.clone(), permits.clone());
        let token = target.tokens.get(index).cloned();
        let conversation = target.conversation;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut socket = open(kind, &ws, token.as_deref()).await?;
            subscribe(kind, &mut socket, conversation).await?;
            anyhow::Ok((index, socket))
        });
    }
    let mut sockets: Vec<Option<Ws>> = (0..target.members).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, socket) = joined??;
        sockets[index] = Some(socket);
    }
    for (index, socket) in sockets.into_iter().enumerate() {
        let socket = socket.context("a member's socket is missing")?;
        let shard = Arc::new(Mutex::new(Vec::new()));
        target.shared.latencies.lock().map_err(poisoned)?.push(shard.clone());
        let (sink, stream) = socket.split();
        let (outbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(sink, inbox));
        tokio::spawn(read_loop(
            target.kind,
            stream,
            outbox.clone(),
            shard,
            target.shared.clone(),
            target.pending.clone(),
        ));
        if index == 0 {
            target.outbox = Some(outbox);
        }
    }
    Ok(())
}
