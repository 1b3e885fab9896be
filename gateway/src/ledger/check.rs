//! The ledger's invariants, verified against the database: every transaction's entries sum
//! to zero, every transaction's amount is what its entries moved on the merchant's side, and
//! every stored balance equals the sums of its entries. Run by a scheduled job (violations
//! raise `ledger_invariant_violations_total`), by `gateway ledger check` and by
//! `GET /v1/admin/ledger/check`.

use poem_openapi::Object;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use serde::Serialize;

/// Which invariant is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A transaction's entries do not sum to zero.
    UnbalancedTransaction,
    /// A transaction's amount is not what its entries moved on the merchant's side.
    TransactionAmountMismatch,
    /// A stored balance is not the sum of its entries.
    BalanceMismatch,
}

/// One broken invariant, with what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The transaction (`txn_…`) or the balance (`mer_…/live|test/CUR`).
    pub subject: String,
    pub detail: String,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct Report {
    pub transactions: i64,
    pub balances: i64,
    pub violations: Vec<Violation>,
}

#[derive(FromQueryResult)]
struct Unbalanced {
    transaction_id: String,
    total: i64,
}

#[derive(FromQueryResult)]
struct AmountMismatch {
    id: String,
    amount: i64,
    moved: i64,
}

#[derive(FromQueryResult)]
struct BalanceMismatch {
    merchant_id: String,
    livemode: bool,
    currency: String,
    stored_available: i64,
    stored_pending: i64,
    summed_available: i64,
    summed_pending: i64,
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

/// Postings of merchant-side accounts per transaction, against the transaction's amount.
/// (A pending charge's release posts −A to `pending` and +A to `available`: it nets to 0.)
const AMOUNT_MISMATCH: &str = "SELECT t.id, t.amount, CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) AS moved \
     FROM balance_transactions t LEFT JOIN ledger_entries e \
       ON e.transaction_id = t.id AND e.account IN ('available', 'pending') \
     GROUP BY t.id, t.amount HAVING t.amount <> CAST(COALESCE(SUM(e.amount), 0) AS BIGINT)";

const UNBALANCED: &str = "SELECT transaction_id, CAST(SUM(amount) AS BIGINT) AS total \
     FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount) <> 0";

/// Stored balances against their entries, both ways (a balance with no entries, entries
/// with no balance).
const BALANCE_MISMATCH: &str = "WITH summed AS ( \
       SELECT merchant_id, livemode, currency, \
         CAST(SUM(CASE WHEN account = 'available' THEN amount ELSE 0 END) AS BIGINT) AS available, \
         CAST(SUM(CASE WHEN account = 'pending' THEN amount ELSE 0 END) AS BIGINT) AS pending \
       FROM ledger_entries WHERE account IN ('available', 'pending') \
       GROUP BY merchant_id, livemode, currency), \
     joined AS ( \
       SELECT b.merchant_id, b.livemode, b.currency, b.available AS stored_available, \
         b.pending AS stored_pending, COALESCE(s.available, 0) AS summed_available, \
         COALESCE(s.pending, 0) AS summed_pending \
       FROM balances b LEFT JOIN summed s ON s.merchant_id = b.merchant_id \
         AND s.livemode = b.livemode AND s.currency = b.currency \
       UNION ALL \
       SELECT s.merchant_id, s.livemode, s.currency, 0, 0, s.available, s.pending \
       FROM summed s WHERE NOT EXISTS (SELECT 1 FROM balances b WHERE b.merchant_id = s.merchant_id \
         AND b.livemode = s.livemode AND b.currency = s.currency)) \
     SELECT merchant_id, livemode, currency, \
       CAST(stored_available AS BIGINT) AS stored_available, CAST(stored_pending AS BIGINT) AS stored_pending, \
       CAST(summed_available AS BIGINT) AS summed_available, CAST(summed_pending AS BIGINT) AS summed_pending \
     FROM joined WHERE stored_available <> summed_available OR stored_pending <> summed_pending";

/// Runs the check and counts what it found in the metrics; a violation is logged with what
/// it is (never a merchant's data beyond ids and amounts).
pub async fn run_and_count<C: ConnectionTrait>(db: &C, metrics: &crate::core::metrics::ApiMetrics) {
    match run(db).await {
        Ok(report) => {
            metrics.ledger_checks.inc();
            metrics
                .ledger_violations
                .inc_by(report.violations.len() as u64);
            for v in &report.violations {
                tracing::error!(kind = ?v.kind, subject = %v.subject, detail = %v.detail, "ledger invariant violated");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "the ledger check failed to run; the next one retries")
        }
    }
}

/// Verifies every invariant over the whole ledger.
pub async fn run<C: ConnectionTrait>(db: &C) -> Result<Report, DbErr> {
    let backend = db.get_database_backend();
    let query = |sql: &str| Statement::from_string(backend, sql.to_string());
    let mut violations = Vec::new();
    for u in Unbalanced::find_by_statement(query(UNBALANCED))
        .all(db)
        .await?
    {
        violations.push(Violation {
            kind: ViolationKind::UnbalancedTransaction,
            subject: u.transaction_id,
            detail: format!("its entries sum to {}", u.total),
        });
    }
    for m in AmountMismatch::find_by_statement(query(AMOUNT_MISMATCH))
        .all(db)
        .await?
    {
        violations.push(Violation {
            kind: ViolationKind::TransactionAmountMismatch,
            subject: m.id,
            detail: format!(
                "amount {} but its entries moved {} on the merchant's side",
                m.amount, m.moved
            ),
        });
    }
    for b in BalanceMismatch::find_by_statement(query(BALANCE_MISMATCH))
        .all(db)
        .await?
    {
        violations.push(Violation {
            kind: ViolationKind::BalanceMismatch,
            subject: format!(
                "{}/{}/{}",
                b.merchant_id,
                if b.livemode { "live" } else { "test" },
                b.currency
            ),
            detail: format!(
                "stored available {} pending {}, entries sum to available {} pending {}",
                b.stored_available, b.stored_pending, b.summed_available, b.summed_pending
            ),
        });
    }
    let count = |table: &str| {
        Count::find_by_statement(query(&format!("SELECT COUNT(*) AS n FROM {table}")))
    };
    let transactions = count("balance_transactions")
        .one(db)
        .await?
        .map_or(0, |c| c.n);
    let balances = count("balances").one(db).await?.map_or(0, |c| c.n);
    Ok(Report {
        transactions,
        balances,
        violations,
    })
}
