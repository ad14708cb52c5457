//! Opens many connections to a listener and holds each with an unfinished request head,
//! the way a slowloris client does, to measure what held connections cost the server.
//!
//!   cargo run --release -p ingest --example hold_connections -- \
//!       --addr 127.0.0.1:18080 --connections 1000 --head-bytes 400000 --hold 10s
//!
//! Each connection sends a request line and then header bytes, never the blank line that
//! ends the head, as fast as the server reads them, up to `--head-bytes`. It prints how
//! many connections were opened, how many head bytes the server took in all, and, after
//! `--hold`, how many the server had closed meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    name = "hold_connections",
    about = "Holds connections with unfinished request heads."
)]
struct Args {
    /// The listener to connect to.
    #[arg(long)]
    addr: SocketAddr,

    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,

    /// Header bytes to send on each connection (the head is never finished).
    #[arg(long, default_value_t = 400_000)]
    head_bytes: usize,

    /// How long to hold the connections once they are all open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
}

/// Sends up to `bytes` of an unfinished head; the bytes the server took before it stopped
/// reading (its head limit) or closed the connection.
async fn send_head(stream: &mut TcpStream, bytes: usize) -> usize {
    let line = format!("X-Pad: {}\r\n", "p".repeat(990));
    let mut sent = 0;
    let first = b"POST /v1/events HTTP/1.1\r\nHost: ingest\r\n";
    if stream.write_all(first).await.is_err() {
        return 0;
    }
    sent += first.len();
    while sent < bytes {
        match tokio::time::timeout(Duration::from_millis(200), stream.write_all(line.as_bytes())).await {
            Ok(Ok(())) => sent += line.len(),
            // Not read any more (the socket buffers are full) or closed: as far as it goes.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    sent
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut held = Vec::with_capacity(args.connections);
    let mut sent = 0;
    for _ in 0..args.connections {
        let mut stream = TcpStream::connect(args.addr).await?;
        sent += send_head(&mut stream, args.head_bytes).await;
        held.push(stream);
    }
    println!(
        "hold_connections: {} connections open, {} head bytes sent in all; holding for {:?}",
        held.len(),
        sent,
        args.hold
    );
    tokio::time::sleep(args.hold).await;
    let mut closed = 0;
    for stream in &mut held {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            // An answer, then the close.
            Ok(Ok(_)) => closed += 1,
            Err(_) => {}
        }
    }
    println!(
        "hold_connections: {closed} of {} closed by the server after {:?}",
        held.len(),
        args.hold
    );
    Ok(())
}
