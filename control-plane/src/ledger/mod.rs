//! The double-entry ledger: every movement of credit is an append-only set of entries,
//! one per account touched, that sums to zero; balances are derived from it.
//!
//! An account is a string key (`user:5:personal`, `team:3:pool`, `org:issued`) and a
//! period (the start instant of a quota period). [`post`] writes a movement, its entries
//! and the cached balances in the caller's transaction, so a balance is always the sum
//! of its entries. Callers decide amounts from balances read under the owner's lock
//! (`crate::db::lock_user`); [`post`] refuses any write that would still take a
//! spendable balance below zero, which rolls the caller's transaction back. The model is in
//! `docs/quota-model.md`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use crate::db::schema::{ledger_balances, ledger_entries, ledger_movements};
use crate::db::sqlite_statement::{Returning, SqliteStatement, Values};
use crate::db::sqlite_time::{self, SqliteTimestamp};
use crate::db::DbConnection;
use crate::error::{Error, Result};

/// The largest amount of credit any one input may name (a quota, a pool, a transfer,
/// a request): 10^15 tokens. Bounding inputs keeps every sum the ledger forms far from
/// the 64-bit limit (SQLite would silently turn an overflowing sum into a float).
pub const MAX_TOKENS: i64 = 1_000_000_000_000_000;

/// The most tokens one usage record may report: 10^12.
pub const MAX_RECORD_TOKENS: i64 = 1_000_000_000_000;

/// The period key of accounts that do not reset (`QUOTA_PERIOD=never` uses it too).
pub fn timeless() -> NaiveDateTime {
    chrono::DateTime::UNIX_EPOCH.naive_utc()
}

/// Where credit sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// The organisation's issuer: every allocation and grant comes from here, so its
    /// balance is minus everything ever issued (derived from its entries, not cached).
    Issued,
    /// Transfers waiting for approval.
    Escrow,
    /// A user's spendable personal credit.
    Personal(i64),
    /// Credit set aside by a user's leases.
    Held(i64),
    /// What a user consumed.
    Used(i64),
    /// A user's critical overdraft (negative = drawn and owed).
    Overdraft(i64),
    /// A user's debt from usage past what a lease held, or without one (negative = owed).
    Debt(i64),
    /// A team's shared pool.
    Pool(i64),
}

impl Account {
    /// The stored key.
    pub fn key(self) -> String {
        match self {
            Self::Issued => ISSUED_KEY.to_owned(),
            Self::Escrow => "org:escrow".to_owned(),
            Self::Personal(id) => format!("user:{id}:personal"),
            Self::Held(id) => format!("user:{id}:held"),
            Self::Used(id) => format!("user:{id}:used"),
            Self::Overdraft(id) => format!("user:{id}:overdraft"),
            Self::Debt(id) => format!("user:{id}:debt"),
            Self::Pool(id) => format!("team:{id}:pool"),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What a movement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A period's personal quota or team pool, issued.
    Allocation,
    /// An admin changed a quota or a pool within the period.
    Adjustment,
    /// Credit set aside for a lease.
    Hold,
    /// What an expired lease did not use, returned to where it came from.
    Release,
    /// Reported usage turning held credit into used.
    Usage,
    /// Usage beyond what a lease held (or without a lease), recorded as debt; the
    /// user's next grant repays it from personal credit.
    Overrun,
    /// Credit from one user to another.
    Transfer,
    /// A transfer waiting for approval, parked in escrow.
    TransferEscrow,
    /// A denied or expired transfer back to its sender.
    TransferReturn,
    /// Unused personal credit into team pools while on vacation.
    VacationRelease,
    /// What the team did not use of it, back on return.
    VacationReturn,
    /// An approved quota request.
    Grant,
    /// A new period's quota paying back earlier debt.
    Repayment,
    /// Usage charged before the ledger existed (migration).
    Opening,
}

impl Kind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::Adjustment => "adjustment",
            Self::Hold => "hold",
            Self::Release => "release",
            Self::Usage => "usage",
            Self::Overrun => "overrun",
            Self::Transfer => "transfer",
            Self::TransferEscrow => "transfer_escrow",
            Self::TransferReturn => "transfer_return",
            Self::VacationRelease => "vacation_release",
            Self::VacationReturn => "vacation_return",
            Self::Grant => "grant",
            Self::Repayment => "repayment",
            Self::Opening => "opening",
        }
    }
}

/// One line of a movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The account.
    pub account: Account,
    /// Its period.
    pub period: NaiveDateTime,
    /// Signed amount in tokens.
    pub amount: i64,
}

/// A movement being built: its context and entries.
#[derive(Debug, Clone)]
pub struct Movement {
    kind: Kind,
    user_id: Option<i64>,
    team_id: Option<i64>,
    actor_id: Option<i64>,
    reference: Option<String>,
    note: Option<String>,
    entries: Vec<Entry>,
}

impl Movement {
    /// An empty movement of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            user_id: None,
            team_id: None,
            actor_id: None,
            reference: None,
            note: None,
            entries: Vec::new(),
        }
    }

    /// The user it concerns.
    pub fn user(mut self, id: i64) -> Self {
        self.user_id = Some(id);
        self
    }

    /// The team it concerns.
    pub fn team(mut self, id: i64) -> Self {
        self.team_id = Some(id);
        self
    }

    /// Who caused it (an admin, the sender of a transfer, …).
    pub fn actor(mut self, id: i64) -> Self {
        self.actor_id = Some(id);
        self
    }

    /// What it refers to (a lease id, a transfer id, …).
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Free text (a transfer's reason, …).
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Adds `amount` to `account` in `period` (zero amounts are dropped at posting).
    pub fn entry(mut self, account: Account, period: NaiveDateTime, amount: i64) -> Self {
        self.entries.push(Entry {
            account,
            period,
            amount,
        });
        self
    }

    /// Moves `amount` from one account to another within `period`.
    pub fn transfer(self, from: Account, to: Account, period: NaiveDateTime, amount: i64) -> Self {
        self.entry(from, period, -amount).entry(to, period, amount)
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[derive(Insertable)]
#[diesel(table_name = ledger_movements)]
struct NewMovement<'a> {
    kind: &'a str,
    created_at: NaiveDateTime,
    user_id: Option<i64>,
    team_id: Option<i64>,
    actor_id: Option<i64>,
    reference: Option<&'a str>,
    note: Option<&'a str>,
}

#[derive(Insertable)]
#[diesel(table_name = ledger_entries, treat_none_as_default_value = false)]
struct NewEntry {
    movement_id: i64,
    account: String,
    period_start: NaiveDateTime,
    amount: i64,
}

/// What a movement adds to one cached balance.
struct BalanceDelta {
    account: String,
    period_start: NaiveDateTime,
    balance: i64,
}

/// A movement's entries netted per account and period, zero amounts dropped.
type Net = BTreeMap<(String, NaiveDateTime), i64>;

/// Nets a movement's entries and checks that they balance.
fn net_entries(movement: &Movement) -> Result<Net> {
    // Same account and period twice in one movement: one entry.
    let mut net: Net = BTreeMap::new();
    let mut sum: i64 = 0;
    for e in &movement.entries {
        sum = sum
            .checked_add(e.amount)
            .ok_or_else(|| Error::Invariant("ledger movement overflows".into()))?;
        let slot = net.entry((e.account.key(), e.period)).or_default();
        *slot = slot
            .checked_add(e.amount)
            .ok_or_else(|| Error::Invariant("ledger entry overflows".into()))?;
    }
    if sum != 0 {
        return Err(Error::Invariant(format!(
            "{} movement does not balance (sum {sum})",
            movement.kind.as_str()
        )));
    }
    net.retain(|_, amount| *amount != 0);
    Ok(net)
}

impl Movement {
    fn row(&self, now: NaiveDateTime) -> NewMovement<'_> {
        NewMovement {
            kind: self.kind.as_str(),
            created_at: now,
            user_id: self.user_id,
            team_id: self.team_id,
            actor_id: self.actor_id,
            reference: self.reference.as_deref(),
            note: self.note.as_deref(),
        }
    }
}

/// Writes a movement in the caller's transaction: the movement row, its non-zero
/// entries and the balances they change. Returns the movement id, or `None` when
/// every amount was zero (nothing moved, nothing written).
///
/// Refuses an unbalanced movement, and one that would take a spendable balance below
/// zero, with [`Error::Invariant`] (the caller's transaction then rolls back).
pub fn post(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    movement: &Movement,
) -> Result<Option<i64>> {
    let net = net_entries(movement)?;
    if net.is_empty() {
        return Ok(None);
    }
    let row = movement.row(now);
    let id: i64 = crate::on_backend!(conn, |c| diesel::insert_into(ledger_movements::table)
        .values(&row)
        .returning(ledger_movements::id)
        .get_result(c))?;
    let entries: Vec<NewEntry> = net
        .iter()
        .map(|((account, period), amount)| NewEntry {
            movement_id: id,
            account: account.clone(),
            period_start: *period,
            amount: *amount,
        })
        .collect();
    insert_entries(conn, &entries)?;
    apply_deltas(conn, &deltas_of(net))?;
    Ok(Some(id))
}

/// Writes several movements in the caller's transaction, as [`post`] writes one, in a
/// few statements whatever their number: the movement rows, all their entries, and
/// every balance they change netted into one upsert (in key order, checked against the
/// floor once). Returns each movement's id (`None` where nothing moved), in order.
pub fn post_all(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    movements: &[Movement],
) -> Result<Vec<Option<i64>>> {
    if let [one] = movements {
        return Ok(vec![post(conn, now, one)?]);
    }
    let mut nets = Vec::with_capacity(movements.len());
    for m in movements {
        nets.push(net_entries(m)?);
    }
    let moving: Vec<&Movement> = movements
        .iter()
        .zip(&nets)
        .filter(|(_, net)| !net.is_empty())
        .map(|(m, _)| m)
        .collect();
    let mut ids = movement_ids(conn, now, &moving)?.into_iter();
    let mut out = Vec::with_capacity(movements.len());
    let mut entries: Vec<NewEntry> = Vec::new();
    let mut total: Net = BTreeMap::new();
    for net in nets {
        if net.is_empty() {
            out.push(None);
            continue;
        }
        let id = ids
            .next()
            .ok_or_else(|| Error::Invariant("fewer movement ids than movements".into()))?;
        out.push(Some(id));
        for ((account, period), amount) in net {
            entries.push(NewEntry {
                movement_id: id,
                account: account.clone(),
                period_start: period,
                amount,
            });
            let slot = total.entry((account, period)).or_default();
            *slot = slot
                .checked_add(amount)
                .ok_or_else(|| Error::Invariant("ledger balance overflows".into()))?;
        }
    }
    insert_entries(conn, &entries)?;
    total.retain(|_, amount| *amount != 0);
    apply_deltas(conn, &deltas_of(total))?;
    Ok(out)
}

#[derive(Insertable)]
#[diesel(table_name = ledger_movements)]
struct NumberedMovement<'a> {
    id: i64,
    #[diesel(embed)]
    row: NewMovement<'a>,
}

#[derive(QueryableByName)]
struct NextId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Inserts the movement rows and returns their ids in order. SQLite: one cached
/// statement per row, in-process. PostgreSQL: the ids drawn from the sequence in one
/// round trip, then one INSERT with them (a multi-row `RETURNING` does not promise
/// its rows in insert order).
fn movement_ids(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    movements: &[&Movement],
) -> Result<Vec<i64>> {
    if movements.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Sqlite(c) => {
            let mut ids = Vec::with_capacity(movements.len());
            for m in movements {
                ids.push(
                    diesel::insert_into(ledger_movements::table)
                        .values(&m.row(now))
                        .returning(ledger_movements::id)
                        .get_result(c)?,
                );
            }
            Ok(ids)
        }
        DbConnection::Postgres(pg) => {
            let count = i64::try_from(movements.len())
                .map_err(|_| Error::Invariant("too many movements".into()))?;
            let ids: Vec<i64> = diesel::sql_query(
                "SELECT nextval(pg_get_serial_sequence('ledger_movements', 'id')) AS id \
                 FROM generate_series(1, $1)",
            )
            .bind::<diesel::sql_types::BigInt, _>(count)
            .load::<NextId>(pg)?
            .into_iter()
            .map(|n| n.id)
            .collect();
            if ids.len() != movements.len() {
                return Err(Error::Invariant("fewer movement ids than movements".into()));
            }
            let rows: Vec<NumberedMovement<'_>> = ids
                .iter()
                .zip(movements)
                .map(|(&id, m)| NumberedMovement {
                    id,
                    row: m.row(now),
                })
                .collect();
            diesel::insert_into(ledger_movements::table)
                .values(&rows)
                .execute(pg)?;
            Ok(ids)
        }
    }
}

/// The cached balances a netted set of entries changes, in key order, so concurrent
/// movements lock balance rows in the same order. The issuer's balance is never
/// decided on, so it is not cached: every allocation in the organisation would
/// otherwise queue on its one row.
fn deltas_of(net: Net) -> Vec<BalanceDelta> {
    net.into_iter()
        .filter(|((account, _), _)| !is_uncached(account))
        .map(|((account, period_start), balance)| BalanceDelta {
            account,
            period_start,
            balance,
        })
        .collect()
}

/// The issuer account's key; its balance is derived from the entries, not cached.
pub const ISSUED_KEY: &str = "org:issued";

/// Accounts whose balance is derived from the entries instead of cached, because no
/// decision reads it and caching would cost a row write on every movement: the issuer
/// (one row every allocation would queue on) and users' held credit (the leases table
/// says what each lease holds; caching it would double the rows each usage batch
/// writes).
fn is_uncached(key: &str) -> bool {
    key == ISSUED_KEY || key.ends_with(":held")
}

/// Whether an account may hold a negative balance.
pub fn may_go_negative(key: &str) -> bool {
    key == "org:issued" || key.ends_with(":overdraft") || key.ends_with(":debt")
}

/// Inserts entries. SQLite: one cached single-row statement per entry (in-process, no
/// SQL text to parse per call, where a multi-row `VALUES` list is parsed anew for
/// every length). PostgreSQL: one statement over `unnest`ed arrays, one round trip
/// whatever the count.
fn insert_entries(conn: &mut DbConnection, entries: &[NewEntry]) -> Result<()> {
    match conn {
        DbConnection::Sqlite(c) => {
            for entry in entries {
                diesel::insert_into(ledger_entries::table)
                    .values(entry)
                    .execute(c)?;
            }
        }
        DbConnection::Postgres(pg) => {
            if entries.is_empty() {
                return Ok(());
            }
            diesel::sql_query(
                "INSERT INTO ledger_entries (movement_id, account, period_start, amount) \
                 SELECT * FROM unnest($1, $2, $3, $4)",
            )
            .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.movement_id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                entries
                    .iter()
                    .map(|e| e.account.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Timestamp>, _>(entries.iter().map(|e| e.period_start).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(entries.iter().map(|e| e.amount).collect::<Vec<_>>())
            .execute(pg)?;
        }
    }
    Ok(())
}

/// A balance as written by [`apply_deltas`].
#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = Text)]
    account: String,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

/// Adds the deltas (in key order) to the cached balances and refuses a spendable one
/// that ends below zero. SQLite: one upsert of fixed text per row
/// ([`SqliteStatement`]: prepared once per connection, then bound and stepped — where
/// a multi-row upsert is new text to parse for every row count); PostgreSQL: one
/// upsert over `unnest`ed arrays, whose rows are taken in array order.
fn apply_deltas(conn: &mut DbConnection, deltas: &[BalanceDelta]) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let written: Vec<(String, i64)> = match conn {
        DbConnection::Sqlite(c) => {
            let mut written = Vec::with_capacity(deltas.len());
            // Periods rendered once each (a usage round has one or two).
            let mut rendered: Option<(NaiveDateTime, String)> = None;
            for delta in deltas {
                let period = match &rendered {
                    Some((t, text)) if *t == delta.period_start => text,
                    _ => {
                        let text = sqlite_time::render(delta.period_start);
                        &rendered.insert((delta.period_start, text)).1
                    }
                };
                let balance: i64 = Returning::<_, BigInt>::new(&SqliteBalanceDelta {
                    account: &delta.account,
                    period_start: SqliteTimestamp(period),
                    balance: delta.balance,
                })
                .get_result(c)?;
                written.push((delta.account.clone(), balance));
            }
            written
        }
        DbConnection::Postgres(pg) => diesel::sql_query(
            "INSERT INTO ledger_balances AS b (account, period_start, balance) \
             SELECT * FROM unnest($1, $2, $3) \
             ON CONFLICT (account, period_start) DO UPDATE SET balance = b.balance + EXCLUDED.balance \
             RETURNING b.account, b.balance",
        )
        .bind::<Array<Text>, _>(deltas.iter().map(|d| d.account.as_str()).collect::<Vec<_>>())
        .bind::<Array<Timestamp>, _>(deltas.iter().map(|d| d.period_start).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(deltas.iter().map(|d| d.balance).collect::<Vec<_>>())
        .load::<Written>(pg)?
        .into_iter()
        .map(|w| (w.account, w.balance))
        .collect(),
    };
    if let Some((account, balance)) = written
        .iter()
        .find(|(account, balance)| *balance < 0 && !may_go_negative(account))
    {
        return Err(Error::Invariant(format!(
            "{account} would go below zero ({balance})"
        )));
    }
    Ok(())
}

/// A balance's delta, added to the cached balance (created at the delta).
struct SqliteBalanceDelta<'a> {
    account: &'a str,
    period_start: SqliteTimestamp<'a>,
    balance: i64,
}

impl SqliteStatement for SqliteBalanceDelta<'_> {
    type Id = SqliteBalanceDelta<'static>;
    const HEAD: &'static str = "INSERT INTO ledger_balances (account, period_start, balance) \
        VALUES (";
    const TAIL: &'static str = ") ON CONFLICT (account, period_start) \
        DO UPDATE SET balance = ledger_balances.balance + excluded.balance \
        RETURNING balance";

    fn bind_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        values.bind::<Text, _>(&self.account)?;
        values.bind::<Timestamp, _>(&self.period_start)?;
        values.bind::<BigInt, _>(&self.balance)
    }
}

/// The balance of one account in one period (0 when it never moved); uncached ones
/// (the issuer, held credit) are summed from their entries.
pub fn balance(conn: &mut DbConnection, account: Account, period: NaiveDateTime) -> Result<i64> {
    let key = account.key();
    if is_uncached(&key) {
        let amounts: Vec<i64> = ledger_entries::table
            .filter(ledger_entries::account.eq(key))
            .filter(ledger_entries::period_start.eq(period))
            .select(ledger_entries::amount)
            .load(conn)?;
        return Ok(amounts.into_iter().sum());
    }
    Ok(ledger_balances::table
        .find((account.key(), period))
        .select(ledger_balances::balance)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Balances of several accounts in one period, in the order asked (not the issuer's:
/// see [`balance`]).
pub fn balances(
    conn: &mut DbConnection,
    accounts: &[Account],
    period: NaiveDateTime,
) -> Result<Vec<i64>> {
    let keys: Vec<String> = accounts.iter().map(|a| a.key()).collect();
    let rows: Vec<(String, i64)> = ledger_balances::table
        .filter(ledger_balances::account.eq_any(&keys))
        .filter(ledger_balances::period_start.eq(period))
        .select((ledger_balances::account, ledger_balances::balance))
        .load(conn)?;
    let found: BTreeMap<String, i64> = rows.into_iter().collect();
    Ok(keys
        .iter()
        .map(|k| found.get(k).copied().unwrap_or(0))
        .collect())
}

/// One account's balances in every period where it is below zero, oldest first
/// (a user's unpaid debt).
pub fn negative_periods(
    conn: &mut DbConnection,
    account: Account,
    before: NaiveDateTime,
) -> Result<Vec<(NaiveDateTime, i64)>> {
    Ok(ledger_balances::table
        .filter(ledger_balances::account.eq(account.key()))
        .filter(ledger_balances::period_start.lt(before))
        .filter(ledger_balances::balance.lt(0))
        .order(ledger_balances::period_start.asc())
        .select((ledger_balances::period_start, ledger_balances::balance))
        .load(conn)?)
}

/// What [`audit`] found wrong with the ledger; empty when it is consistent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Movements whose entries do not sum to zero.
    pub unbalanced_movements: Vec<i64>,
    /// Cached balances that differ from the sum of their entries.
    pub drifted_balances: Vec<String>,
    /// Spendable balances below zero.
    pub below_floor: Vec<String>,
    /// Sum of every entry (must be 0).
    pub total: i64,
}

impl AuditReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.unbalanced_movements.is_empty()
            && self.drifted_balances.is_empty()
            && self.below_floor.is_empty()
            && self.total == 0
    }
}

/// Re-derives every balance from the entries and checks the invariants: each movement
/// sums to zero, cached balances equal their entries, no spendable balance is below
/// zero, and everything sums to zero. Reads the whole ledger: for tests and operators.
pub fn audit(conn: &mut DbConnection) -> Result<AuditReport> {
    let entries: Vec<(i64, String, NaiveDateTime, i64)> = ledger_entries::table
        .select((
            ledger_entries::movement_id,
            ledger_entries::account,
            ledger_entries::period_start,
            ledger_entries::amount,
        ))
        .load(conn)?;
    let mut per_movement: BTreeMap<i64, i64> = BTreeMap::new();
    let mut per_account: BTreeMap<(String, NaiveDateTime), i64> = BTreeMap::new();
    let mut report = AuditReport::default();
    for (movement, account, period, amount) in entries {
        *per_movement.entry(movement).or_default() += amount;
        *per_account.entry((account, period)).or_default() += amount;
        report.total += amount;
    }
    report.unbalanced_movements = per_movement
        .into_iter()
        .filter(|(_, sum)| *sum != 0)
        .map(|(id, _)| id)
        .collect();
    let cached: Vec<(String, NaiveDateTime, i64)> = ledger_balances::table
        .select((
            ledger_balances::account,
            ledger_balances::period_start,
            ledger_balances::balance,
        ))
        .load(conn)?;
    let mut cached_map: BTreeMap<(String, NaiveDateTime), i64> = BTreeMap::new();
    for (account, period, balance) in cached {
        cached_map.insert((account, period), balance);
    }
    for (key, derived) in &per_account {
        if !is_uncached(&key.0) && cached_map.get(key).copied().unwrap_or(0) != *derived {
            report.drifted_balances.push(format!("{}@{}", key.0, key.1));
        }
    }
    for (key, balance) in &cached_map {
        if !per_account.contains_key(key) && *balance != 0 {
            report.drifted_balances.push(format!("{}@{}", key.0, key.1));
        }
    }
    for (key, balance) in &per_account {
        if *balance < 0 && !may_go_negative(&key.0) {
            report.below_floor.push(format!("{}@{}", key.0, key.1));
        }
    }
    Ok(report)
}

/// A movement as listed to admins.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct MovementRow {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// When.
    pub created_at: NaiveDateTime,
    /// User concerned.
    pub user_id: Option<i64>,
    /// Team concerned.
    pub team_id: Option<i64>,
    /// Who caused it.
    pub actor_id: Option<i64>,
    /// Lease, transfer, request … id.
    pub reference: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

/// The newest movements concerning a user (as the subject), newest first, each with
/// its entries.
pub fn movements_for_user(
    conn: &mut DbConnection,
    user_id: i64,
    limit: i64,
) -> Result<Vec<(MovementRow, Vec<StoredEntry>)>> {
    let rows: Vec<MovementRow> = ledger_movements::table
        .filter(ledger_movements::user_id.eq(user_id))
        .order(ledger_movements::id.desc())
        .limit(limit)
        .select((
            ledger_movements::id,
            ledger_movements::kind,
            ledger_movements::created_at,
            ledger_movements::user_id,
            ledger_movements::team_id,
            ledger_movements::actor_id,
            ledger_movements::reference,
            ledger_movements::note,
        ))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let entries: Vec<(i64, String, NaiveDateTime, i64)> = ledger_entries::table
        .filter(ledger_entries::movement_id.eq_any(&ids))
        .order(ledger_entries::id.asc())
        .select((
            ledger_entries::movement_id,
            ledger_entries::account,
            ledger_entries::period_start,
            ledger_entries::amount,
        ))
        .load(conn)?;
    let mut by_movement: BTreeMap<i64, Vec<StoredEntry>> = BTreeMap::new();
    for (movement, account, period_start, amount) in entries {
        by_movement.entry(movement).or_default().push(StoredEntry {
            account,
            period_start,
            amount,
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let entries = by_movement.remove(&r.id).unwrap_or_default();
            (r, entries)
        })
        .collect())
}

/// A stored entry (account as its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Account key.
    pub account: String,
    /// Period.
    pub period_start: NaiveDateTime,
    /// Signed amount.
    pub amount: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(Account::Personal(5).key(), "user:5:personal");
        assert_eq!(Account::Pool(3).key(), "team:3:pool");
        assert_eq!(Account::Issued.key(), "org:issued");
        assert_eq!(Account::Overdraft(9).key(), "user:9:overdraft");
    }

    #[test]
    fn movements_net_their_entries() {
        let p = timeless();
        let m = Movement::new(Kind::Transfer)
            .transfer(Account::Personal(1), Account::Personal(2), p, 5)
            .transfer(Account::Personal(2), Account::Personal(1), p, 2);
        assert_eq!(m.entries().len(), 4);
        assert_eq!(m.entries().iter().map(|e| e.amount).sum::<i64>(), 0);
    }
}
