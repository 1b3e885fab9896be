//! Merchants and their API keys. Keys are random, shown once, and stored as SHA-256 hashes.

use chrono::Utc;
use entity::ids::{ApiKeyId, MerchantId, random_token};
use entity::{api_keys, merchants};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    TransactionSession, TransactionTrait,
};

use entity::signature::sha256_hex;

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedMerchant {
    pub merchant_id: MerchantId,
    pub livemode: bool,
}

pub struct CreatedMerchant {
    pub merchant: merchants::Model,
    pub api_key: String,
}

pub async fn create<C: TransactionTrait>(db: &C, name: &str) -> Result<CreatedMerchant, DbErr> {
    let now = Utc::now();
    let merchant_id = MerchantId::generate();
    let api_key = format!("sk_test_{}", random_token(32));
    let txn = db.begin().await?;
    let merchant = merchants::Entity::insert(merchants::ActiveModel {
        id: Set(merchant_id.clone()),
        name: Set(name.to_string()),
        created_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    api_keys::Entity::insert(api_keys::ActiveModel {
        id: Set(ApiKeyId::generate()),
        merchant_id: Set(merchant_id),
        key_hash: Set(sha256_hex(api_key.as_bytes())),
        prefix: Set(api_key[..12].to_string()),
        livemode: Set(false),
        created_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(CreatedMerchant { merchant, api_key })
}

/// The merchant a presented key belongs to, if any.
pub async fn authenticate<C: ConnectionTrait>(
    db: &C,
    presented_key: &str,
) -> Result<Option<AuthedMerchant>, DbErr> {
    let hash = sha256_hex(presented_key.as_bytes());
    Ok(api_keys::Entity::find()
        .filter(api_keys::Column::KeyHash.eq(hash))
        .one(db)
        .await?
        .map(|k| AuthedMerchant {
            merchant_id: k.merchant_id,
            livemode: k.livemode,
        }))
}

pub async fn any_exist<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    Ok(merchants::Entity::find().one(db).await?.is_some())
}
