//! A TCP proxy to a local service that can be switched off, cutting every connection through
//! it and refusing new ones: a broker outage without stopping the shared broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub port: u16,
    enabled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
}

impl TcpProxy {
    pub async fn start(target: &'static str, enabled: bool) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let flag = Arc::new(AtomicBool::new(enabled));
        let (cut, _) = watch::channel(0u64);
        let (flag2, cut2) = (flag.clone(), cut.clone());
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
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            port,
            enabled: flag,
            cut,
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
}
