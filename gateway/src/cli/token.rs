//! `gateway access token create|revoke|list`: manage admin API tokens on
//! the gateway box itself (works while the gateway runs: SQLite WAL).

use std::io::Write;

use anyhow::Context as _;
use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use crate::access::issuance::{create_token, default_lifetime, revoke_token};
use crate::access::name::{TokenId, TokenName};
use crate::access::role::Role;
use crate::access::token::record::{NewToken, TokenKind, TokenRecord};
use crate::access::token::store::TokenStore;
use crate::audit::AuditLog;

/// `gateway access token ...`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed once and never stored.
    Create {
        /// Who or what holds the token (e.g. `ops.alice`, `prometheus`).
        #[arg(long)]
        name: String,
        /// viewer (read), operator (+ quarantine/reactivate) or admin (+ enrol/revoke/tokens).
        #[arg(long)]
        role: Role,
        /// Lifetime, e.g. `90d`, `12h` (default 90 days).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "no_expiry")]
        expires_in: Option<std::time::Duration>,
        /// Issue a token that never expires (the access review will still list it).
        #[arg(long)]
        no_expiry: bool,
        /// Bind a TOTP secret: mutating calls then need `X-Wardgate-TOTP`.
        #[arg(long)]
        totp: bool,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// The token id (the 16 hex digits after `wgt_`).
        id: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &Role::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Run a token subcommand against `store`/`audit`, acting as `actor`.
///
/// # Errors
/// Invalid input or a store/audit failure, with what to do next.
pub fn run(
    args: TokenArgs,
    store: &TokenStore,
    audit: &AuditLog,
    actor: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create {
            name,
            role,
            expires_in,
            no_expiry,
            totp,
        } => {
            let lifetime = if no_expiry {
                None
            } else {
                Some(match expires_in {
                    Some(d) => chrono::Duration::from_std(d).context("--expires-in is too long")?,
                    None => default_lifetime(),
                })
            };
            let new = NewToken {
                name: TokenName::parse(&name)?,
                role,
                lifetime,
                bind_totp: totp,
            };
            let issued = create_token(store, audit, new, actor)?;
            writeln!(out, "token id:   {}", issued.record.id)?;
            writeln!(out, "role:       {}", issued.record.role)?;
            writeln!(out, "expires:    {}", fmt_time(issued.record.expires_at))?;
            writeln!(out, "secret:     {}", issued.token.expose())?;
            if let Some(secret) = &issued.totp {
                writeln!(out, "totp key:   {}", secret.base32())?;
                writeln!(
                    out,
                    "totp url:   {}",
                    secret.otpauth_url(issued.record.name.as_str())
                )?;
            }
            writeln!(
                out,
                "\nThe secret is shown only now; the gateway keeps only its hash. Send it as `Authorization: Bearer <secret>`."
            )?;
        }
        TokenCommand::Revoke { id } => {
            let record = revoke_token(store, audit, &TokenId::parse(&id)?, actor)?;
            writeln!(
                out,
                "revoked token {} ({}, {})",
                record.id,
                record.name.as_str(),
                record.role
            )?;
        }
        TokenCommand::List { json } => {
            let tokens = store.list()?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tokens)?)?;
            } else {
                write_table(out, &tokens, |_| String::new())?;
            }
        }
    }
    Ok(())
}

pub(crate) fn fmt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// A fixed-width table of tokens with one extra column.
pub(crate) fn write_table(
    out: &mut dyn Write,
    tokens: &[TokenRecord],
    extra: impl Fn(&TokenRecord) -> String,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16}  {:<20}  {:<8}  {:<11}  {:<20}  {:<20}  {:<20}  {:<4}  FLAGS",
        "ID", "NAME", "ROLE", "KIND", "CREATED", "LAST USED", "EXPIRES", "TOTP"
    )?;
    for t in tokens {
        let kind = match t.kind {
            TokenKind::Standard => "standard",
            TokenKind::BreakGlass => "break-glass",
        };
        writeln!(
            out,
            "{:<16}  {:<20}  {:<8}  {:<11}  {:<20}  {:<20}  {:<20}  {:<4}  {}",
            t.id.as_str(),
            t.name.as_str(),
            t.role.as_str(),
            kind,
            fmt_time(Some(t.created_at)),
            fmt_time(t.last_used_at),
            fmt_time(t.expires_at),
            if t.totp_bound { "yes" } else { "no" },
            extra(t),
        )?;
    }
    Ok(())
}
