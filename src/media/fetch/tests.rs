//! Tests of the address policy, the per-hop checks, and the fetch loop against a local server.

use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn forbidden<T>(r: &Result<T, FetchError>) -> bool {
    matches!(r, Err(FetchError::Forbidden(_)))
}

#[test]
fn refuses_non_public_ipv4() {
    for a in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.0.9",
        "169.254.169.254",
        "169.254.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        assert!(!is_public(ip(a)), "{a} must be refused");
    }
}

#[test]
fn allows_public_ipv4() {
    for a in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.0.1.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.254",
        "47.74.1.1",
    ] {
        assert!(is_public(ip(a)), "{a} must be allowed");
    }
}

#[test]
fn refuses_non_public_ipv6() {
    for a in [
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "::10.0.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::808:808",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "100::1",
        "2001:db8::1",
        "2001::1",
        "2001:2::1",
        "2001:10::1",
        "3fff::1",
        "::ffff:0:7f00:1",
    ] {
        assert!(!is_public(ip(a)), "{a} must be refused");
    }
}

#[test]
fn allows_public_ipv6() {
    for a in [
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2400:cb00::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "3fff:1000::1",
    ] {
        assert!(is_public(ip(a)), "{a} must be allowed");
    }
}

#[test]
fn url_checks_before_resolving() {
    let check = |u: &str| check_url(u, is_public);
    assert!(forbidden(&check("http://127.0.0.1:1/x")));
    assert!(forbidden(&check("http://10.0.0.1/x")));
    assert!(forbidden(&check("http://169.254.169.254/latest/meta-data")));
    assert!(forbidden(&check("http://[::1]/")));
    assert!(forbidden(&check("http://[::ffff:127.0.0.1]/")));
    assert!(forbidden(&check("http://[::ffff:7f00:1]/")));
    assert!(forbidden(&check("http://localhost:9/x")));
    assert!(forbidden(&check("http://LOCALHOST./x")));
    assert!(forbidden(&check("http://a.b.localhost/x")));
    assert!(forbidden(&check(
        "http://metadata.google.internal/computeMetadata/v1/"
    )));
    assert!(forbidden(&check("http://metadata/")));
    for bad in [
        "ftp://x",
        "file:///etc/passwd",
        "gopher://x/",
        "not a url",
        "http://",
        "http://user:pw@example.com/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.0.%31/",
        "http://1.1.1.1./",
        "http://134744072/",
    ] {
        let r = check(bad);
        assert!(
            matches!(r, Err(FetchError::BadUrl(_) | FetchError::Forbidden(_))),
            "{bad}: {r:?}"
        );
    }
    assert!(matches!(
        check("http://2130706433/"),
        Err(FetchError::BadUrl(_))
    ));
    for good in [
        "http://8.8.8.8/a.png",
        "https://example.com/a.png?x=1",
        "HTTPS://Example.COM:8443/a",
        "http://[2606:4700:4700::1111]:8080/x",
    ] {
        assert!(check(good).is_ok(), "{good}");
    }
}

#[test]
fn raw_host_is_what_was_written() {
    assert_eq!(raw_host("http://u@0x7F.1:80/x").as_deref(), Some("0x7f.1"));
    assert_eq!(raw_host("http://[::1]:80/").as_deref(), Some("[::1]"));
    assert_eq!(raw_host("https://a.b?q").as_deref(), Some("a.b"));
    assert_eq!(raw_host("no-scheme"), None);
}

#[tokio::test]
async fn hop_check_pins_literal_addresses() {
    let url = Url::parse("http://8.8.8.8/x").unwrap();
    assert_eq!(
        check_hop(&url, is_public).await.unwrap(),
        [SocketAddr::from(([8, 8, 8, 8], 80))]
    );
    let url = Url::parse("https://[2606:4700:4700::1111]/x").unwrap();
    assert_eq!(
        check_hop(&url, is_public).await.unwrap(),
        [SocketAddr::new(ip("2606:4700:4700::1111"), 443)]
    );
    let url = Url::parse("http://192.168.0.1:8080/").unwrap();
    assert!(forbidden(&check_hop(&url, is_public).await));
}

#[tokio::test]
async fn hop_check_refuses_names_resolving_to_loopback() {
    // Straight to the resolving step, past the name list, as a name unknown to the list would go.
    let url = Url::parse("http://localhost:9/x").unwrap();
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", 9))
        .await
        .map(Iterator::collect)
        .unwrap_or_default();
    assert!(resolved.iter().all(|a| !is_public(a.ip())));
    assert!(forbidden(&check_hop(&url, is_public).await));
}

#[test]
fn redirect_hops_are_checked() {
    let here = Url::parse("https://example.com/a/b.png").unwrap();
    let hop = |loc: &str| next_hop(&here, loc, is_public);
    assert_eq!(hop("/c.png").unwrap().as_str(), "https://example.com/c.png");
    assert_eq!(
        hop("d.png").unwrap().as_str(),
        "https://example.com/a/d.png"
    );
    assert_eq!(
        hop("//cdn.example.org/e.png").unwrap().as_str(),
        "https://cdn.example.org/e.png"
    );
    assert_eq!(
        hop("http://8.8.4.4/f").unwrap().as_str(),
        "http://8.8.4.4/f"
    );
    assert!(forbidden(&hop("http://127.0.0.1/")));
    assert!(forbidden(&hop("//169.254.169.254/latest")));
    assert!(forbidden(&hop("http://[::ffff:10.0.0.1]/")));
    assert!(forbidden(&hop("http://localhost/")));
    assert!(matches!(
        hop("ftp://example.com/"),
        Err(FetchError::BadUrl(_))
    ));
    assert!(matches!(
        hop("file:///etc/passwd"),
        Err(FetchError::BadUrl(_))
    ));
    assert!(matches!(
        hop("http://0x7f000001/"),
        Err(FetchError::BadUrl(_))
    ));
}

#[test]
fn mime_choice() {
    let url = Url::parse("https://x/a/photo.JPG?sig=1").unwrap();
    let png = b"\x89PNG\r\n\x1a\n";
    assert_eq!(
        pick_mime(Some("Image/WebP; charset=binary"), png, &url),
        "image/webp"
    );
    assert_eq!(
        pick_mime(Some("application/octet-stream"), png, &url),
        "image/png"
    );
    assert_eq!(pick_mime(None, png, &url), "image/png");
    assert_eq!(pick_mime(None, b"??", &url), "image/jpeg");
    assert_eq!(pick_mime(Some(""), b"??", &url), "image/jpeg");
    let bare = Url::parse("https://x/blob").unwrap();
    assert_eq!(pick_mime(None, b"??", &bare), "application/octet-stream");
}

#[tokio::test]
async fn refuses_forbidden_urls_without_connecting() {
    let f = RemoteFetcher::new(Duration::from_secs(5), 1024);
    for u in [
        "http://127.0.0.1:1/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9/x",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        assert!(forbidden(&f.fetch(u).await), "{u}");
    }
    assert!(matches!(
        f.fetch("ftp://x").await,
        Err(FetchError::BadUrl(_))
    ));
    assert!(matches!(
        f.fetch("http://2130706433/").await,
        Err(FetchError::BadUrl(_) | FetchError::Forbidden(_))
    ));
}

// ---- against a local server, with a policy that allows 127.0.0.1 and nothing else ----

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn only_127_0_0_1(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn redirect(to: &str) -> Vec<u8> {
    response(
        "302 Found",
        &[("location", to.to_owned()), ("content-length", "0".into())],
        b"",
    )
}

fn ok(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut headers = vec![("content-length", body.len().to_string())];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.to_owned()));
    }
    response("200 OK", &headers, body)
}

fn route(path: &str, port: u16) -> Vec<u8> {
    match path {
        "/img" => ok(Some("image/png"), PNG),
        "/named.png" => ok(None, b"not really a png"),
        "/sniffed" => ok(Some("application/octet-stream"), b"GIF89a\x01\0\x01\0"),
        "/r1" => redirect("/img"),
        "/chain3" => redirect("/chain2"),
        "/chain2" => redirect(&format!("http://127.0.0.1:{port}/chain1")),
        "/chain1" => redirect("img"),
        "/chain4" => redirect("/chain3"),
        "/loop" => redirect("/loop"),
        "/to-private" => redirect("http://10.0.0.1/x"),
        "/to-other-loopback" => redirect(&format!("http://127.0.0.2:{port}/img")),
        "/to-localhost" => redirect(&format!("http://localhost:{port}/img")),
        "/to-ftp" => redirect("ftp://127.0.0.1/img"),
        "/no-location" => response("302 Found", &[("content-length", "0".into())], b""),
        "/declared-big" => response("200 OK", &[("content-length", "1000000".into())], b"short"),
        "/streamed-big" => {
            let mut body = Vec::new();
            for _ in 0..20 {
                body.extend_from_slice(b"64\r\n");
                body.extend_from_slice(&[b'a'; 100]);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            response("200 OK", &[("transfer-encoding", "chunked".into())], &body)
        }
        "/exact" => ok(Some("text/plain"), &[b'a'; 1024]),
        _ => response("404 Not Found", &[("content-length", "0".into())], b""),
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers from `route`; `/slow` never answers.
async fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                if path == "/slow" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = socket.write_all(&route(&path, port)).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

fn local_fetcher(max_bytes: usize) -> RemoteFetcher {
    RemoteFetcher::with_policy(Duration::from_secs(5), max_bytes, only_127_0_0_1)
}

#[tokio::test]
async fn fetches_and_types_the_body() {
    let port = serve().await;
    let f = local_fetcher(1024);
    let got = f
        .fetch(&format!("http://127.0.0.1:{port}/img"))
        .await
        .unwrap();
    assert_eq!(got.mime, "image/png");
    assert_eq!(&got.bytes[..], PNG);
    let got = f
        .fetch(&format!("http://127.0.0.1:{port}/sniffed"))
        .await
        .unwrap();
    assert_eq!(got.mime, "image/gif");
    let got = f
        .fetch(&format!("http://127.0.0.1:{port}/named.png"))
        .await
        .unwrap();
    assert_eq!(got.mime, "image/png");
    let got = f
        .fetch(&format!("http://127.0.0.1:{port}/exact"))
        .await
        .unwrap();
    assert_eq!(got.bytes.len(), 1024);
}

#[tokio::test]
async fn follows_up_to_three_redirects() {
    let port = serve().await;
    let f = local_fetcher(1024);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        f.fetch(&format!("{base}/r1")).await.unwrap().mime,
        "image/png"
    );
    assert_eq!(
        &f.fetch(&format!("{base}/chain3")).await.unwrap().bytes[..],
        PNG
    );
    assert!(matches!(
        f.fetch(&format!("{base}/chain4")).await,
        Err(FetchError::Failed(_))
    ));
    assert!(matches!(
        f.fetch(&format!("{base}/loop")).await,
        Err(FetchError::Failed(_))
    ));
    assert!(matches!(
        f.fetch(&format!("{base}/no-location")).await,
        Err(FetchError::Http(302))
    ));
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let port = serve().await;
    let f = local_fetcher(1024);
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/to-private", "/to-other-loopback", "/to-localhost"] {
        let r = f.fetch(&format!("{base}{path}")).await;
        assert!(forbidden(&r), "{path}");
    }
    assert!(matches!(
        f.fetch(&format!("{base}/to-ftp")).await,
        Err(FetchError::BadUrl(_))
    ));
}

#[tokio::test]
async fn size_limit_on_declared_and_streamed_bodies() {
    let port = serve().await;
    let f = local_fetcher(1023);
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/declared-big", "/streamed-big", "/exact"] {
        let r = f.fetch(&format!("{base}{path}")).await;
        assert!(
            matches!(r, Err(FetchError::TooLarge { limit_bytes: 1023 })),
            "{path}: {r:?}"
        );
    }
}

#[tokio::test]
async fn status_and_timeout() {
    let port = serve().await;
    let base = format!("http://127.0.0.1:{port}");
    assert!(matches!(
        local_fetcher(1024).fetch(&format!("{base}/missing")).await,
        Err(FetchError::Http(404))
    ));
    let impatient = RemoteFetcher::with_policy(Duration::from_millis(200), 1024, only_127_0_0_1);
    assert!(matches!(
        impatient.fetch(&format!("{base}/slow")).await,
        Err(FetchError::Failed(_))
    ));
}

#[tokio::test]
async fn pinned_resolver_answers_only_with_checked_addresses() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 4242));
    let pinned = Pinned(vec![addr]);
    let got: Vec<SocketAddr> = pinned
        .resolve("anything.example".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(got, [addr]);
}

#[tokio::test]
async fn pinned_client_never_asks_dns() {
    // `.invalid` never resolves (RFC 6761): reaching the server proves the pinned address was used.
    let port = serve().await;
    let url = Url::parse(&format!("http://pinned.invalid:{port}/img")).unwrap();
    let client = pinned_client(
        &url,
        &[SocketAddr::from(([127, 0, 0, 1], port))],
        Duration::from_secs(5),
    )
    .unwrap();
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], PNG);
}
