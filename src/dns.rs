//! TXT look-ups (RFC 1035), just what `herald doctor` needs to read a
//! sender domain's SPF, DKIM and DMARC records: one question to one
//! recursive resolver over UDP (EDNS0, 1,232-byte answers), again over TCP
//! when the answer was truncated. Bounded: names of at most 253
//! characters, a timeout per question, answers of at most 64 KiB, at most
//! 64 compression jumps per name.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The TXT record type.
pub const TXT: u16 = 16;
/// Largest UDP answer asked for (EDNS0): the size DNS Flag Day 2020 chose.
const UDP_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("no answer from the DNS server {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("the DNS server {0} could not be asked: {1}")]
    Io(SocketAddr, String),
    #[error("the DNS server answered {0} (rcode {1})")]
    Server(&'static str, u8),
    #[error("a malformed DNS answer: {0}")]
    Malformed(&'static str),
    #[error("{0:?} is not a domain name")]
    BadName(String),
}

/// The name's labels as DNS writes them.
pub fn encode_name(name: &str) -> Result<Vec<u8>, DnsError> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName(name.to_owned()));
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(DnsError::BadName(name.to_owned()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(out)
}

/// A query for `name`'s records of `qtype`, recursion desired, with an
/// EDNS0 OPT record.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // 1 question, 1 additional
    q.extend_from_slice(&encode_name(name)?);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
                                              // OPT: root name, type 41, class = payload size, TTL 0, no options.
    q.push(0);
    q.extend_from_slice(&41u16.to_be_bytes());
    q.extend_from_slice(&UDP_PAYLOAD.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(q)
}

/// Skip the (possibly compressed) name at `pos`; the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Malformed("a name runs past the end"))?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xC0 == 0xC0 => return Ok(pos + 2),
            l if l & 0xC0 == 0 => pos += 1 + usize::from(l),
            _ => return Err(DnsError::Malformed("an unknown label type")),
        }
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, DnsError> {
    msg.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Malformed("the answer ends early"))
}

/// What an answer to query `id` says: whether it was truncated, and the
/// TXT records it holds (each record's strings joined, as SPF and DKIM
/// read them). A name that does not exist is no records, not an error.
pub fn parse_txt(id: u16, msg: &[u8]) -> Result<(bool, Vec<String>), DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::Malformed("shorter than a header"));
    }
    if u16_at(msg, 0)? != id {
        return Err(DnsError::Malformed("an answer to another question"));
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed("not an answer"));
    }
    if flags & 0x0200 != 0 {
        // Truncated: what follows may be cut anywhere; TCP gives it whole.
        return Ok((true, Vec::new()));
    }
    match (flags & 0x000F) as u8 {
        0 => {}
        3 => return Ok((false, Vec::new())),
        2 => return Err(DnsError::Server("SERVFAIL", 2)),
        5 => return Err(DnsError::Server("REFUSED", 5)),
        other => return Err(DnsError::Server("an error", other)),
    }
    let (questions, answers) = (u16_at(msg, 4)?, u16_at(msg, 6)?);
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let rdlen = usize::from(u16_at(msg, pos + 8)?);
        let start = pos + 10;
        let rdata = msg
            .get(start..start + rdlen)
            .ok_or(DnsError::Malformed("a record runs past the end"))?;
        pos = start + rdlen;
        if rtype != TXT {
            continue; // a CNAME on the way: the resolver answered its target's records too
        }
        let mut text = Vec::with_capacity(rdlen);
        let mut i = 0;
        while i < rdata.len() {
            let n = usize::from(rdata[i]);
            let s = rdata
                .get(i + 1..i + 1 + n)
                .ok_or(DnsError::Malformed("a TXT string runs past its record"))?;
            text.extend_from_slice(s);
            i += 1 + n;
        }
        records.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok((false, records))
}

/// The TXT records of `name`, asked of `server` (`timeout` per try).
pub async fn txt(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<String>, DnsError> {
    let id = fastrand::u16(..);
    let q = query(id, name, TXT)?;
    let io = |e: std::io::Error| DnsError::Io(server, e.to_string());
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let mut buf = vec![0u8; 65_535];
    // Two tries over UDP (a datagram may be lost), then TCP if truncated.
    let mut answer = None;
    for _ in 0..2 {
        socket.send(&q).await.map_err(io)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(io(e)),
                Ok(Ok(n)) => match parse_txt(id, &buf[..n]) {
                    // A stray datagram (another id): keep waiting.
                    Err(DnsError::Malformed("an answer to another question")) => continue,
                    other => {
                        answer = Some(other?);
                        break;
                    }
                },
            }
        }
        if answer.is_some() {
            break;
        }
    }
    match answer {
        None => Err(DnsError::Timeout(server, timeout)),
        Some((false, records)) => Ok(records),
        Some((true, _)) => tokio::time::timeout(timeout, txt_tcp(server, id, &q))
            .await
            .map_err(|_| DnsError::Timeout(server, timeout))?,
    }
}

/// The same question over TCP (RFC 7766): each message after its length.
async fn txt_tcp(server: SocketAddr, id: u16, q: &[u8]) -> Result<Vec<String>, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(server, e.to_string());
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
    framed.extend_from_slice(q);
    stream.write_all(&framed).await.map_err(io)?;
    let len = usize::from(stream.read_u16().await.map_err(io)?);
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg).await.map_err(io)?;
    parse_txt(id, &msg).map(|(_, records)| records)
}

/// The first `nameserver` of `/etc/resolv.conf` (port 53), as this
/// machine's programs ask.
pub fn system_resolver() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `q` (as a server writes it) with these TXT records;
    /// the first record's strings are split at 255 bytes.
    fn answer(q: &[u8], flags: u16, records: &[&str]) -> Vec<u8> {
        let mut a = q[..12].to_vec();
        a[2..4].copy_from_slice(&flags.to_be_bytes());
        a[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        a[10..12].copy_from_slice(&[0, 0]);
        let qend = skip_name(q, 12).unwrap() + 4;
        a.extend_from_slice(&q[12..qend]);
        for r in records {
            a.extend_from_slice(&[0xC0, 12]);
            a.extend_from_slice(&TXT.to_be_bytes());
            a.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
            let mut rdata = Vec::new();
            for chunk in r.as_bytes().chunks(255) {
                rdata.push(chunk.len() as u8);
                rdata.extend_from_slice(chunk);
            }
            a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            a.extend_from_slice(&rdata);
        }
        a
    }

    #[test]
    fn a_query_is_what_rfc_1035_writes() {
        let q = query(0xBEEF, "_dmarc.example.com", TXT).unwrap();
        assert_eq!(&q[..12], &[0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..32], b"\x06_dmarc\x07example\x03com\x00");
        assert_eq!(&q[32..36], &[0, 16, 0, 1]);
        assert_eq!(&q[36..], &[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn names_are_bounded() {
        assert!(encode_name("example.com.").is_ok());
        assert!(encode_name(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(encode_name(&"a.".repeat(130)).is_err());
        assert!(encode_name("a..b").is_err());
        assert!(encode_name("").is_err());
        assert!(encode_name("exämple.com").is_err());
    }

    #[test]
    fn answers_give_their_records_joined() {
        let q = query(7, "example.com", TXT).unwrap();
        let long = format!("v=spf1 {} ~all", "include:a.example.net ".repeat(20));
        let a = answer(&q, 0x8180, &["v=spf1 -all", &long]);
        assert_eq!(parse_txt(7, &a).unwrap(), (false, vec!["v=spf1 -all".to_owned(), long]));
        // NXDOMAIN: no records. Truncated: said so.
        assert_eq!(parse_txt(7, &answer(&q, 0x8183, &[])).unwrap(), (false, vec![]));
        assert!(parse_txt(7, &answer(&q, 0x8380, &[])).unwrap().0);
        assert_eq!(
            parse_txt(7, &answer(&q, 0x8182, &[])),
            Err(DnsError::Server("SERVFAIL", 2))
        );
        assert!(parse_txt(8, &a).is_err(), "another question's answer");
        for cut in [5, 20, a.len() - 3] {
            assert!(parse_txt(7, &a[..cut]).is_err(), "cut at {cut}");
        }
    }
}
