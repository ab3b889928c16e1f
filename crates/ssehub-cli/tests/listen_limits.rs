//! `ssehub listen` against a hostile server: a tiny local server answers with a proper
//! event-stream head and then one line that never ends (8 MiB of it, then it holds the
//! connection open). `listen` must exit with an error naming the limit, not hang or grow.

mod common;

use std::time::Duration;

use common::run_cli_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const MIB: usize = 1024 * 1024;

/// Serve one connection: read the request head, answer 200 `text/event-stream`, then
/// write up to `total` bytes of `data: xxxx...` without a line end, and hold the
/// connection open (bounded) so that only the client's limit can end the stream.
/// Returns the bytes of the body written before the client went away.
async fn endless_line_server(listener: TcpListener, total: usize) -> usize {
    let (mut sock, _) = listener.accept().await.expect("accept listen's connection");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await.expect("read the request");
        assert!(n > 0, "the client closed before sending its request");
        head.extend_from_slice(&buf[..n]);
        assert!(head.len() < 64 * 1024, "request head too large");
    }
    let request = String::from_utf8_lossy(&head);
    assert!(request.starts_with("GET /sse HTTP/1.1\r\n"), "{request}");
    sock.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\ndata: ",
    )
    .await
    .expect("write the head");
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 6;
    while written < total {
        let n = chunk.len().min(total - written);
        if sock.write_all(&chunk[..n]).await.is_err() {
            return written; // the client hung up: what we want
        }
        written += n;
    }
    // All sent; keep the connection open a while, so a client that only stops at the end
    // of the stream would hang here until its own --timeout.
    let _ = tokio::time::timeout(Duration::from_secs(20), sock.read(&mut buf)).await;
    written
}

/// [`endless_line_server`] on an ephemeral port: the stream's URL, and the task that
/// returns what it wrote.
async fn start_endless_line_server(total: usize) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(endless_line_server(listener, total));
    (format!("http://{addr}/sse"), server)
}

/// The bytes the server wrote before the client went away (bounded wait).
async fn bytes_written(server: JoinHandle<usize>) -> usize {
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server finishes")
        .expect("the server task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_exits_with_an_error_naming_the_limit_on_an_endless_line() {
    let (url, server) = start_endless_line_server(8 * MIB).await;
    // --timeout is far above what the refusal takes: a timeout means the limit failed.
    let out = run_cli_async(&["listen", &url, "--timeout", "10"], b"").await;
    assert!(!out.status.success(), "listen must fail: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "no event was complete: {:?}",
        out.stdout
    );
    let limit = ssehub::decode::DEFAULT_MAX_LINE;
    assert!(
        out.stderr
            .contains(&format!("max_line limit of {limit} bytes"))
            && out.stderr.contains("--max-data"),
        "the error must name the limit and how to raise it: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("timed out"), "{}", out.stderr);
    println!("listen said: {}", out.stderr.trim());
    // listen hung up long before the 8 MiB were all written (socket buffers aside).
    let written = bytes_written(server).await;
    println!("the server wrote {written} bytes before listen hung up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_max_data_lets_the_same_line_grow_further() {
    // With --max-data at 4 MiB, listen reads past the default limit and fails only later,
    // naming the limit it was given.
    let (url, server) = start_endless_line_server(8 * MIB).await;
    let max = 4 * MIB;
    let args = [
        "listen",
        &url,
        "--timeout",
        "10",
        "--max-data",
        &max.to_string(),
    ];
    let out = run_cli_async(&args, b"").await;
    assert!(!out.status.success(), "listen must fail: {out:?}");
    assert!(
        out.stderr
            .contains(&format!("max_line limit of {} bytes", max + 64)),
        "{}",
        out.stderr
    );
    let written = bytes_written(server).await;
    assert!(written > max, "listen refused after only {written} bytes");
}
