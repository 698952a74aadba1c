//! Serial latency, interleaved: one request at a time, the proxies compared taking turns
//! in short blocks (one keep-alive connection each, the order rotated every cycle), so
//! every proxy is measured under the same machine conditions, milliseconds apart. On a
//! shared machine whose speed drifts by tens of percent between seconds, separate timed
//! runs per proxy compare drift as much as proxies; interleaved blocks do not. A block's
//! first request, the first after another proxy ran, is sent but not counted: the rest
//! find the caches as a proxy serving a steady stream does.
//!
//!     alfred-bench-serial --seconds 20 --block 50 --path /v1/chat/completions \
//!         --body-file body.json --keys-file keys.txt envoy=127.0.0.1:10000 alfred=127.0.0.1:10001
//!
//! Prints one JSON object: per proxy the requests counted, non-2xx answers and latency
//! percentiles in µs, and the median over cycles of the difference between its block's
//! median and the first proxy's (the paired estimate of what it adds).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Target {
    name: String,
    addr: SocketAddr,
    conn: Option<TcpStream>,
    latencies_us: Vec<f64>,
    /// Median of each cycle's block.
    block_medians_us: Vec<f64>,
    non_2xx: u64,
}

struct Options {
    seconds: f64,
    block: usize,
    path: String,
    body: Vec<u8>,
    keys: Vec<String>,
    targets: Vec<Target>,
}

fn parse_args() -> Result<Options, String> {
    let mut seconds = 10.0;
    let mut block = 50;
    let mut path = "/v1/chat/completions".to_owned();
    let mut body = Vec::new();
    let mut keys = Vec::new();
    let mut targets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                let v = value("--seconds")?;
                seconds = v
                    .parse()
                    .map_err(|_| format!("--seconds: not a number: {v}"))?;
            }
            "--block" => {
                let v = value("--block")?;
                block = v
                    .parse()
                    .ok()
                    .filter(|&b| b >= 2)
                    .ok_or(format!("--block: not a whole number of at least 2: {v}"))?;
            }
            "--path" => path = value("--path")?,
            "--body-file" => {
                let f = value("--body-file")?;
                body = std::fs::read(&f).map_err(|e| format!("--body-file {f}: {e}"))?;
            }
            "--keys-file" => {
                let f = value("--keys-file")?;
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("--keys-file {f}: {e}"))?;
                keys = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            target => {
                let (name, addr) = target
                    .split_once('=')
                    .ok_or(format!("expected name=host:port, got {target}"))?;
                let addr = addr
                    .parse()
                    .map_err(|_| format!("{name}: not a host:port: {addr}"))?;
                targets.push(Target {
                    name: name.to_owned(),
                    addr,
                    conn: None,
                    latencies_us: Vec::new(),
                    block_medians_us: Vec::new(),
                    non_2xx: 0,
                });
            }
        }
    }
    if keys.is_empty() {
        return Err("--keys-file: no keys".into());
    }
    if targets.is_empty() {
        return Err("no targets (name=host:port)".into());
    }
    Ok(Options {
        seconds,
        block,
        path,
        body,
        keys,
        targets,
    })
}

fn request(path: &str, key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads one response (headers, then a `content-length` body) and returns its status.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no content-length")?;
    while buf.len() < header_end + length {
        let n = conn.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// One request on `target`'s connection (opened, or reopened once if the proxy closed
/// it): the status and the time from the first byte written to the last byte read.
fn exchange(
    target: &mut Target,
    bytes: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(u16, Duration), String> {
    for attempt in 0..2 {
        let conn = match target.conn.as_mut() {
            Some(c) => c,
            None => {
                let c =
                    TcpStream::connect(target.addr).map_err(|e| format!("{}: {e}", target.name))?;
                c.set_nodelay(true).map_err(|e| e.to_string())?;
                target.conn.insert(c)
            }
        };
        let started = Instant::now();
        let result = conn
            .write_all(bytes)
            .map_err(|e| e.to_string())
            .and_then(|()| read_response(conn, buf));
        match result {
            Ok(status) => return Ok((status, started.elapsed())),
            Err(e) if attempt == 0 => {
                eprintln!("{}: {e}; reconnecting", target.name);
                target.conn = None;
            }
            Err(e) => return Err(format!("{}: {e}", target.name)),
        }
    }
    Err(format!("{}: no answer", target.name))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 50.0)
}

fn run(mut o: Options) -> Result<String, String> {
    let requests: Vec<Vec<u8>> = o
        .keys
        .iter()
        .map(|k| request(&o.path, k, &o.body))
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let mut buf = Vec::with_capacity(64 * 1024);
    let n = o.targets.len();
    let mut cycle = 0usize;
    while Instant::now() < deadline {
        for i in 0..n {
            let target = &mut o.targets[(cycle + i) % n];
            let mut block = Vec::with_capacity(o.block);
            for j in 0..o.block {
                let bytes = &requests[(cycle * o.block + j) % requests.len()];
                let (status, took) = exchange(target, bytes, &mut buf)?;
                if !(200..300).contains(&status) {
                    target.non_2xx += 1;
                }
                if j > 0 {
                    block.push(took.as_secs_f64() * 1e6);
                }
            }
            target.latencies_us.extend_from_slice(&block);
            target.block_medians_us.push(median(block));
        }
        cycle += 1;
    }
    let base = o.targets[0].block_medians_us.clone();
    let mut out = String::from("{\"cycles\":");
    out.push_str(&cycle.to_string());
    out.push_str(",\"targets\":{");
    for (i, t) in o.targets.iter().enumerate() {
        let paired = median(
            t.block_medians_us
                .iter()
                .zip(&base)
                .map(|(a, b)| a - b)
                .collect(),
        );
        let mut sorted = t.latencies_us.clone();
        sorted.sort_by(f64::total_cmp);
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "\"{}\":{{\"requests\":{},\"non_2xx\":{},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"paired_added_us\":{:.1}}}",
            t.name,
            sorted.len(),
            t.non_2xx,
            percentile(&sorted, 50.0),
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            paired
        ));
    }
    out.push_str("}}");
    Ok(out)
}

fn main() {
    match parse_args().and_then(run) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("alfred-bench-serial: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn percentiles_pick_by_rank_and_median_sorts_first() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 50.0), 3.0);
        assert_eq!(percentile(&sorted, 100.0), 5.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(median(vec![9.0, -1.0, 4.0]), 4.0);
    }

    /// A server answering each request on a connection with `answer`, closing every
    /// connection after `per_connection` answers.
    fn server(answer: &'static [u8], per_connection: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 4096];
                for _ in 0..per_connection {
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    if conn.write_all(answer).is_err() {
                        break;
                    }
                }
            }
        });
        addr
    }

    fn target(addr: SocketAddr) -> Target {
        Target {
            name: "t".into(),
            addr,
            conn: None,
            latencies_us: Vec::new(),
            block_medians_us: Vec::new(),
            non_2xx: 0,
        }
    }

    #[test]
    fn reads_status_and_whole_body_and_reconnects_when_the_server_closes() {
        let addr = server(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\n\r\nslow!",
            1,
        );
        let mut t = target(addr);
        let mut buf = Vec::new();
        let bytes = request("/v1/chat/completions", "tp-key", b"{}");
        for _ in 0..3 {
            let (status, _) = exchange(&mut t, &bytes, &mut buf).expect("answer");
            assert_eq!(status, 429);
            assert!(buf.ends_with(b"slow!"));
        }
    }

    #[test]
    fn a_response_without_content_length_is_an_error() {
        let addr = server(b"HTTP/1.1 200 OK\r\n\r\n", 10);
        let mut t = target(addr);
        let mut buf = Vec::new();
        let err = exchange(&mut t, &request("/", "k", b""), &mut buf).expect_err("no length");
        assert!(err.contains("content-length"), "{err}");
    }
}
