//! A merchant's webhook receiver: records every request and answers as told (a status per
//! call, then a default; or hanging past the sender's timeout).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{Body, EndpointExt, Request, Response, Route, Server, handler, http::StatusCode};

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request arrived.
    pub at: std::time::Instant,
    /// The status it was answered with; `None` while it is being answered (or if the sender
    /// went away first).
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone, Debug)]
pub enum Behavior {
    /// Answer these statuses in order, then `then` forever.
    Statuses(Vec<u16>, u16),
    /// Sleep this long before answering 200.
    Hang(Duration),
}

struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<(VecDeque<u16>, u16)>,
    hang: Mutex<Option<Duration>>,
    /// Headers added to every answer (a `Retry-After`, say).
    headers: Mutex<Vec<(String, String)>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

#[derive(Clone)]
pub struct Receiver {
    shared: Arc<Shared>,
    pub url: String,
}

#[handler]
async fn hook(req: &Request, body: Body, shared: Data<&Arc<Shared>>) -> Response {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = body.into_vec().await.unwrap_or_default();
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let index = {
        let mut received = shared.received.lock().expect("lock");
        received.push(Received {
            headers,
            body,
            at: std::time::Instant::now(),
            answered: None,
        });
        received.len() - 1
    };
    let hang = *shared.hang.lock().expect("lock");
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = {
        let mut script = shared.script.lock().expect("lock");
        let default = script.1;
        script.0.pop_front().unwrap_or(default)
    };
    shared.received.lock().expect("lock")[index].answered = Some(status);
    // A 3xx points back at this receiver, so a sender that followed it would be counted twice.
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("location", "/hook");
    for (name, value) in shared.headers.lock().expect("lock").iter() {
        response = response.header(name.as_str(), value.as_str());
    }
    response.body("answer from the merchant")
}

impl Receiver {
    pub async fn start(behavior: Behavior) -> Receiver {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            script: Mutex::new((VecDeque::new(), 200)),
            hang: Mutex::new(None),
            headers: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind receiver");
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("tcp")
            .port();
        let app = Route::new().at("/hook", hook).data(shared.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        let r = Receiver {
            shared,
            url: format!("http://127.0.0.1:{port}/hook"),
        };
        r.behave(behavior);
        r
    }

    pub fn behave(&self, behavior: Behavior) {
        match behavior {
            Behavior::Statuses(first, then) => {
                *self.shared.script.lock().expect("lock") = (first.into(), then);
                *self.shared.hang.lock().expect("lock") = None;
            }
            Behavior::Hang(d) => *self.shared.hang.lock().expect("lock") = Some(d),
        }
    }

    /// Adds a header to every answer from now on.
    pub fn answer_with_header(&self, name: &str, value: &str) {
        self.shared
            .headers
            .lock()
            .expect("lock")
            .push((name.into(), value.into()));
    }

    /// The most requests this receiver was answering at one time.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Requests whose body is the event `event_type`.
    pub fn of_type(&self, event_type: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.json()["type"] == event_type)
            .collect()
    }

    /// The `payment.pending` webhooks of the payment `payment_id`, by its id in their bodies.
    pub fn pending_webhooks_of(&self, payment_id: &str) -> usize {
        self.of_type("payment.pending")
            .iter()
            .filter(|r| r.json()["data"]["id"] == payment_id)
            .count()
    }
}
