//! A TCP proxy to a local service that can be switched off, cutting every connection through
//! it and refusing new ones: a broker outage without stopping the shared broker. It can also
//! hold what the service sends back (a broker whose confirms are late) without cutting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub port: u16,
    enabled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    hold: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
}

impl TcpProxy {
    pub async fn start(target: &'static str, enabled: bool) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let flag = Arc::new(AtomicBool::new(enabled));
        let (cut, _) = watch::channel(0u64);
        let (hold, _) = watch::channel(false);
        let (flag2, cut2, hold2) = (flag.clone(), cut.clone(), hold.clone());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                if !flag2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut2.subscribe();
                let mut hold_rx = hold2.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.split();
                    let (mut from_service, mut to_service) = outbound.into_split();
                    let replies = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from_service.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while *hold_rx.borrow_and_update() {
                                if hold_rx.changed().await.is_err() {
                                    return;
                                }
                            }
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_client, &mut to_service) => {}
                        _ = replies => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            port,
            enabled: flag,
            cut,
            hold,
            accepted,
        }
    }

    /// Connections opened through the proxy so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
        if !on {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    /// Holds (or lets go) everything the service sends back on every connection, without
    /// cutting them: what the client sends still arrives.
    pub fn hold_replies(&self, hold: bool) {
        self.hold.send_replace(hold);
    }
}
