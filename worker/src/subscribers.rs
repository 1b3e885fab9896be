//! Each merchant's enabled webhook endpoints, as the fan-out needs them, kept in memory by the
//! merchant's endpoints version so that a fresh event costs no read of them.
//!
//! Every change to a merchant's endpoints bumps `merchants.endpoints_version` in the change's
//! own commit (a trigger; `migration/src/m20261207_000027_endpoints_version.rs`), and a new
//! payment's statement returns the version its snapshot saw, which its event carries on the
//! bus ([`entity::bus::EventOnBus::endpoints_version`]). So an event created after an endpoint
//! change names a version at least as new as that change, and a copy held at that version or
//! later has it. An event without a version (the relay's turns, the embedded mode's SQLite,
//! messages from older gateways) reads the endpoints as before and leaves the copy alone.
//!
//! On a miss the version is read before the endpoints: both are single statements, each with
//! its own snapshot, so the endpoints are at least as new as the version they are kept under.
//! A copy is also dropped after [`KEPT_FOR`], so a database restored to an older version (or a
//! change made with the trigger disabled) is seen within that time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entity::bus::BusMessage;
use entity::ids::MerchantId;
use entity::status::EndpointStatus;
use entity::{merchants, webhook_endpoints};
use prometheus_client::metrics::counter::Counter;
use sea_orm::sea_query::{Alias, Expr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect,
};

/// How long a merchant's endpoints are kept at most, whatever the versions say.
pub const KEPT_FOR: Duration = Duration::from_secs(60);
/// Merchants kept at most; past that the copies start again from none.
const MERCHANTS_AT_MOST: usize = 10_000;

/// One merchant's enabled endpoints, each shared with the attempts made to it rather than
/// copied into each.
pub type Enabled = Arc<Vec<Arc<webhook_endpoints::Model>>>;

/// A merchant's enabled endpoints as of a version.
struct Kept {
    version: i64,
    read_at: Instant,
    endpoints: Enabled,
}

/// The copies, shared by a worker's fan-outs.
pub struct EndpointCopies {
    kept: std::sync::Mutex<HashMap<MerchantId, Kept>>,
    /// Merchants served from a copy (`webhook_fanout_endpoints_from_copy`).
    served: Counter,
    /// Merchants read (`webhook_fanout_endpoints_read`).
    read: Counter,
}

#[derive(FromQueryResult)]
struct MerchantVersion {
    id: MerchantId,
    endpoints_version: i64,
}

impl EndpointCopies {
    /// No copies yet; `served` and `read` count the merchants of each kind.
    pub fn new(served: Counter, read: Counter) -> EndpointCopies {
        EndpointCopies {
            kept: std::sync::Mutex::default(),
            served,
            read,
        }
    }

    /// The enabled endpoints of every merchant `messages` name: from the copies where each of
    /// the merchant's messages names a version they have, otherwise read (and kept, if the
    /// messages named versions). A merchant with none has an empty list.
    pub async fn enabled_of<C: ConnectionTrait>(
        &self,
        db: &C,
        messages: &[BusMessage],
    ) -> Result<HashMap<MerchantId, Enabled>, DbErr> {
        // Per merchant, the newest version its messages need; `None` if any names none.
        let mut needed: HashMap<&MerchantId, Option<i64>> = HashMap::new();
        for message in messages {
            let version = message.carried_event().and_then(|e| e.endpoints_version);
            needed
                .entry(message.merchant_id())
                .and_modify(|v| *v = v.zip(version).map(|(a, b)| a.max(b)))
                .or_insert(version);
        }
        let mut found: HashMap<MerchantId, Enabled> = HashMap::with_capacity(needed.len());
        if let Ok(kept) = self.kept.lock() {
            for (&merchant, version) in &needed {
                let Some(version) = version else { continue };
                if let Some(k) = kept.get(merchant)
                    && k.version >= *version
                    && k.read_at.elapsed() < KEPT_FOR
                {
                    found.insert(merchant.clone(), k.endpoints.clone());
                }
            }
        }
        self.served.inc_by(found.len() as u64);
        let missing: Vec<&MerchantId> = needed
            .keys()
            .copied()
            .filter(|m| !found.contains_key(*m))
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        self.read.inc_by(missing.len() as u64);
        // Versions first, and only for merchants whose messages can use a copy.
        let to_keep: Vec<&MerchantId> = missing
            .iter()
            .copied()
            .filter(|m| needed.get(m).is_some_and(Option::is_some))
            .collect();
        let versions = versions_of(db, &to_keep).await?;
        let mut read: HashMap<MerchantId, Vec<Arc<webhook_endpoints::Model>>> =
            missing.iter().map(|m| ((*m).clone(), Vec::new())).collect();
        for endpoint in webhook_endpoints::Entity::find()
            .filter(
                webhook_endpoints::Column::MerchantId
                    .is_in(runtime::db::padded(missing.iter().map(|m| m.as_str()))),
            )
            .filter(webhook_endpoints::Column::Status.eq(EndpointStatus::Enabled))
            .all(db)
            .await?
        {
            read.entry(endpoint.merchant_id.clone())
                .or_default()
                .push(Arc::new(endpoint));
        }
        let now = Instant::now();
        let mut kept = self.kept.lock().ok();
        for (merchant, endpoints) in read {
            let endpoints: Enabled = Arc::new(endpoints);
            if let (Some(kept), Some(&version)) = (kept.as_mut(), versions.get(&merchant))
                // A slower concurrent read must not replace a newer copy.
                && kept.get(&merchant).is_none_or(|k| k.version <= version)
            {
                if kept.len() >= MERCHANTS_AT_MOST && !kept.contains_key(&merchant) {
                    kept.clear();
                }
                kept.insert(
                    merchant.clone(),
                    Kept {
                        version,
                        read_at: now,
                        endpoints: endpoints.clone(),
                    },
                );
            }
            found.insert(merchant, endpoints);
        }
        Ok(found)
    }
}

/// The endpoints versions of `merchants` (PostgreSQL only: elsewhere nothing carries one).
async fn versions_of<C: ConnectionTrait>(
    db: &C,
    merchants: &[&MerchantId],
) -> Result<HashMap<MerchantId, i64>, DbErr> {
    if merchants.is_empty() || db.get_database_backend() != DbBackend::Postgres {
        return Ok(HashMap::new());
    }
    let rows = merchants::Entity::find()
        .select_only()
        .column(merchants::Column::Id)
        .column_as(
            Expr::col(Alias::new(merchants::ENDPOINTS_VERSION)),
            merchants::ENDPOINTS_VERSION,
        )
        .filter(
            merchants::Column::Id.is_in(runtime::db::padded(merchants.iter().map(|m| m.as_str()))),
        )
        .into_model::<MerchantVersion>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.endpoints_version))
        .collect())
}
