//! Credit transfers: `POST /v1/users/me/transfer`, the user's history, the admin (and
//! team admin) listing with filters and CSV export, and approvals of pending ones.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::json::decode;
use super::query::{decode_query, limit, parse_range, path_id};
use super::wire::{DecisionBody, TransferBody, TransferQuery, TransferView};
use super::AppState;
use crate::db::DbConnection;
use crate::teams;
use crate::transfers::{self, TransferFilter, TransferRequest};
use crate::users::User;

/// `POST /v1/users/me/transfer` → 201 with the transfer (`completed`, or `pending`
/// above `TRANSFER_APPROVAL_THRESHOLD`).
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, sender| {
            let body: TransferBody = decode(&body)?;
            let recipient_email = body.recipient_email.clone();
            let transfer = transfers::send(
                conn,
                now,
                &sender,
                TransferRequest {
                    recipient_email: body.recipient_email,
                    amount: body.amount,
                    reason: body.reason,
                },
                &rules,
            )?;
            Ok(TransferView::from((
                transfer,
                sender.email,
                recipient_email.trim().to_lowercase(),
            )))
        })
        .await?;
    tracing::info!(transfer_id = view.id, amount = view.amount, status = %view.status, "transfer");
    Ok(HttpResponse::Created().json(view))
}

fn filter_from(query: &TransferQuery) -> Result<TransferFilter, ApiError> {
    let (from, to) = parse_range(query.from.as_deref(), query.to.as_deref())?;
    for (field, value) in [
        ("min_amount", query.min_amount),
        ("max_amount", query.max_amount),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::Unprocessable {
                message: format!("{field}: must be ≥ 0"),
                field: Some(field.into()),
                code: "invalid_query",
            });
        }
    }
    if let Some(status) = &query.status {
        if !["completed", "pending", "denied", "expired"].contains(&status.as_str()) {
            return Err(ApiError::Unprocessable {
                message: "status: expected completed, pending, denied or expired".into(),
                field: Some("status".into()),
                code: "invalid_query",
            });
        }
    }
    Ok(TransferFilter {
        user_id: query.user_id,
        among: None,
        from,
        to,
        min_amount: query.min_amount,
        max_amount: query.max_amount,
        status: query.status.clone(),
        limit: limit(query.limit, 100, 10_000)?,
    })
}

fn wants_csv(query: &TransferQuery) -> Result<bool, ApiError> {
    match query.format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::Unprocessable {
            message: "format: expected json or csv".into(),
            field: Some("format".into()),
            code: "invalid_query",
        }),
    }
}

/// `GET /v1/users/me/transfers?from=&to=&min_amount=&max_amount=&status=&limit=&format=`:
/// the caller's transfers, sent and received.
pub async fn mine(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let (rows, csv) = state
        .as_caller(&req, Require::User, move |conn, user| {
            let query: TransferQuery = decode_query(&raw_query)?;
            let csv = wants_csv(&query)?;
            let mut filter = filter_from(&query)?;
            filter.user_id = Some(user.id);
            let rows = transfers::list(conn, &filter)?
                .into_iter()
                .map(TransferView::from)
                .collect::<Vec<_>>();
            Ok((rows, csv))
        })
        .await?;
    Ok(respond(rows, csv))
}

/// `GET /v1/admin/transfers?from=&to=&user_id=&min_amount=&max_amount=&status=&limit=&format=csv`:
/// every transfer for admins, those touching their members for team admins.
pub async fn admin_list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let (rows, csv) = state
        .as_caller(&req, Require::User, move |conn, caller| {
            let among = if caller.is_admin {
                None
            } else {
                Some(members_of_administered(conn, &caller)?)
            };
            let query: TransferQuery = decode_query(&raw_query)?;
            let csv = wants_csv(&query)?;
            let mut filter = filter_from(&query)?;
            filter.among = among;
            let rows = transfers::list(conn, &filter)?
                .into_iter()
                .map(TransferView::from)
                .collect::<Vec<_>>();
            Ok((rows, csv))
        })
        .await?;
    Ok(respond(rows, csv))
}

/// Admins and team admins decide approvals; anyone else is refused before the id or
/// the body is even looked at.
pub(super) fn may_decide(conn: &mut DbConnection, caller: &User) -> Result<(), ApiError> {
    if caller.is_admin || !teams::administered_by(conn, caller.id)?.is_empty() {
        Ok(())
    } else {
        Err(ApiError::NotAllowed("admins and team admins only"))
    }
}

/// The members of every team `caller` administers; 403 when none.
pub(super) fn members_of_administered(
    conn: &mut DbConnection,
    caller: &User,
) -> Result<Vec<i64>, ApiError> {
    let own = teams::administered_by(conn, caller.id)?;
    if own.is_empty() {
        return Err(ApiError::NotAllowed("admins and team admins only"));
    }
    let mut ids = Vec::new();
    for team_id in own {
        ids.extend(
            teams::members(conn, team_id)?
                .into_iter()
                .map(|(m, _)| m.user_id),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn respond(rows: Vec<TransferView>, csv: bool) -> HttpResponse {
    if !csv {
        return HttpResponse::Ok().json(rows);
    }
    let mut out = String::from(
        "id,created_at,sender_email,recipient_email,amount,reason,status,decided_at,decided_by\r\n",
    );
    for t in &rows {
        let fields = [
            t.id.to_string(),
            t.created_at.clone(),
            t.sender_email.clone(),
            t.recipient_email.clone(),
            t.amount.to_string(),
            t.reason.clone(),
            t.status.clone(),
            t.decided_at.clone().unwrap_or_default(),
            t.decided_by.map(|d| d.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("transfers.csv".into())],
        })
        .body(out)
}

/// RFC 4180 quoting, and a leading `'` on text a spreadsheet would run as a formula.
fn csv_field(raw: &str) -> String {
    let guarded =
        if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) && raw.parse::<f64>().is_err() {
            format!("'{raw}")
        } else {
            raw.to_owned()
        };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// `POST /v1/admin/transfers/{id}/approve` with optional `{"note"}`.
pub async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, req, path.into_inner(), body, true).await
}

/// `POST /v1/admin/transfers/{id}/deny` with optional `{"note"}`.
pub async fn deny(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, req, path.into_inner(), body, false).await
}

async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    raw: String,
    body: web::Bytes,
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, caller| {
            may_decide(conn, &caller)?;
            let id = path_id(&raw, "transfer")?;
            let sender = transfers::get(conn, id)?.sender_id;
            if !caller.is_admin && !teams::administers_member(conn, caller.id, sender)? {
                return Err(ApiError::NotAllowed(
                    "only an admin or a team admin of the sender may decide this transfer",
                ));
            }
            let body: DecisionBody = if body.is_empty() {
                DecisionBody::default()
            } else {
                decode(&body)?
            };
            let transfer = transfers::decide(conn, now, id, &caller, approve, body.note, &rules)?;
            Ok(TransferView::from(transfers::get_with_emails(
                conn,
                transfer.id,
            )?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_quoting_and_formula_guard() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-5"), "-5");
    }
}
