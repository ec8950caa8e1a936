//! A loopback DNS server for `herald doctor`'s SPF, DKIM and DMARC checks:
//! answers TXT questions from a table (NXDOMAIN for names it does not
//! hold) over UDP, truncating answers larger than the asker's EDNS0 size,
//! and over TCP on the same port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Records = Arc<Mutex<HashMap<String, Vec<String>>>>;
type Asked = Arc<Mutex<Vec<(&'static str, String)>>>;

pub(crate) struct DnsServer {
    pub addr: SocketAddr,
    records: Records,
    /// Questions asked over UDP and TCP: (transport, name).
    pub asked: Asked,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The question's name (lower case), type, and the asker's UDP size.
fn question(q: &[u8]) -> Option<(String, u16, usize, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + len)?).to_ascii_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let qend = pos + 4;
    // An OPT record after the question: root name, type 41, class = size.
    let size = match q.get(qend..qend + 5) {
        Some([0, 0, 41, hi, lo]) => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 512,
    };
    Some((labels.join("."), qtype, qend, size))
}

fn answer(q: &[u8], records: &Records, udp: bool) -> Option<Vec<u8>> {
    let (name, qtype, qend, size) = question(q)?;
    let found = records.lock().unwrap().get(&name).cloned();
    let mut a = q[..12].to_vec();
    let rcode = if found.is_some() { 0 } else { 3 };
    let txt: Vec<String> = if qtype == 16 {
        found.unwrap_or_default()
    } else {
        Vec::new()
    };
    a[2..4].copy_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    a[4..6].copy_from_slice(&[0, 1]);
    a[6..8].copy_from_slice(&(txt.len() as u16).to_be_bytes());
    a[8..12].copy_from_slice(&[0, 0, 0, 0]);
    a.extend_from_slice(&q[12..qend]);
    for r in &txt {
        a.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 1, 44]);
        let mut rdata = Vec::new();
        for chunk in r.as_bytes().chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(&rdata);
    }
    if udp && a.len() > size {
        // Too big for the asker: the header and question, marked truncated.
        a.truncate(qend);
        a[2] |= 0x02;
        a[6..8].copy_from_slice(&[0, 0]);
    }
    Some(a)
}

impl DnsServer {
    /// A server holding `records`: (name, one TXT record) pairs; a name
    /// may appear more than once.
    pub(crate) async fn start(records: &[(&str, &str)]) -> DnsServer {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind dns udp");
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.expect("bind dns tcp");
        let (records_of, asked_of): (Records, Asked) = Default::default();
        let (recs, asked) = (records_of.clone(), asked_of.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some((name, ..)) = question(&buf[..n]) {
                    asked.lock().unwrap().push(("udp", name));
                }
                if let Some(a) = answer(&buf[..n], &recs, true) {
                    let _ = udp.send_to(&a, from).await;
                }
            }
        });
        let (recs, asked) = (records_of.clone(), asked_of.clone());
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let (recs, asked) = (recs.clone(), asked.clone());
                tokio::spawn(async move {
                    let Ok(len) = s.read_u16().await else { return };
                    let mut q = vec![0u8; usize::from(len)];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    if let Some((name, ..)) = question(&q) {
                        asked.lock().unwrap().push(("tcp", name));
                    }
                    if let Some(a) = answer(&q, &recs, false) {
                        let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&a);
                        let _ = s.write_all(&framed).await;
                    }
                });
            }
        });
        let server = DnsServer {
            addr,
            records: records_of,
            asked: asked_of,
            tasks: vec![udp_task, tcp_task],
        };
        server.set(records);
        server
    }

    /// Replace the records.
    pub(crate) fn set(&self, records: &[(&str, &str)]) {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (name, txt) in records {
            map.entry(name.to_ascii_lowercase())
                .or_default()
                .push((*txt).to_owned());
        }
        *self.records.lock().unwrap() = map;
    }
}
