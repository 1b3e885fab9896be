//! Checking dashboard passwords (Argon2id) without letting a flood of sign-ins take the
//! gateway's memory: a small pool of threads of their own, each reusing its Argon2 memory, with
//! a short queue; beyond it a sign-in is told to retry (429).

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use entity::ids::random_token;

/// Every checker is busy and the queue is full: the caller is told to retry.
#[derive(Debug)]
pub struct Busy;

/// Threads that check passwords, and sign-ins that may wait for one. Argon2id takes 19 MiB
/// a check: two at a time bound what a flood of sign-ins can take.
const CHECKERS: usize = 2;
const CHECK_QUEUE: usize = 8;

type Check = (String, String, tokio::sync::oneshot::Sender<bool>);

/// The pool that checks passwords, with a bounded queue (see the module's doc).
#[derive(Clone)]
pub struct PasswordChecks {
    queue: std::sync::mpsc::SyncSender<Check>,
    /// Checks done, for the `dashboard_password_checks_total` metric.
    pub done: prometheus_client::metrics::counter::Counter,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks::new()
    }
}

impl PasswordChecks {
    pub fn new() -> PasswordChecks {
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Check>(CHECK_QUEUE);
        let jobs = std::sync::Arc::new(std::sync::Mutex::new(jobs));
        let done = prometheus_client::metrics::counter::Counter::default();
        for n in 0..CHECKERS {
            let (jobs, done) = (jobs.clone(), done.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    // Each thread keeps one Argon2 memory and reuses it: the allocator never
                    // sees a 19 MiB allocation per check (which glibc keeps per arena).
                    let mut memory: Vec<argon2::Block> = Vec::new();
                    loop {
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(_) => return,
                        };
                        let Ok((hash, candidate, answer)) = job else {
                            return;
                        };
                        let _ = answer.send(verify_in(&mut memory, &hash, &candidate));
                        done.inc();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-check thread");
            }
        }
        PasswordChecks { queue, done }
    }

    /// Whether `candidate` matches `hash`; `Err` when the pool is busy (the caller retries).
    pub(super) async fn check(&self, hash: String, candidate: String) -> Result<bool, Busy> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue
            .try_send((hash, candidate, answer))
            .map_err(|_| Busy)?;
        answered.await.map_err(|_| Busy)
    }
}

/// An Argon2id hash (random salt, the crate's default cost) in PHC format.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(random_token(16).as_bytes()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The most Argon2 memory a hash may ask for (the default asks 19 MiB): a hash is ours, but a
/// corrupt one must not make a thread allocate without bound.
const MOST_ARGON2_BLOCKS: usize = 64 * 1024;

/// Verifies `password` against a PHC `hash` with `memory` as Argon2's working memory, grown
/// to the hash's cost once and reused for every later check.
fn verify_in(memory: &mut Vec<argon2::Block>, hash: &str, password: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        argon2::Params::try_from(&parsed),
        argon2::Algorithm::try_from(parsed.algorithm),
    ) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MOST_ARGON2_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_a_salt_and_verify_only_themselves() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        let mut memory = Vec::new();
        assert!(verify_in(&mut memory, &a, "correct horse"));
        assert!(!verify_in(&mut memory, &a, "correct hors"));
        assert!(!verify_in(&mut memory, "not a hash", "correct horse"));
    }
}
