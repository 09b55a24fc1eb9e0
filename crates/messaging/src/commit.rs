//! Storing messages: sequence numbers without gaps, and group commit.
//!
//! A message's sequence number is its conversation's `last_seq` plus one, allocated in the
//! transaction that inserts it: the conversation's row is locked first (an `UPDATE` of
//! it), so concurrent senders on any node wait for each other and a rolled-back
//! transaction gives its numbers back. Membership is checked in the same transaction, so
//! a member removed before the commit cannot slip a message in.
//!
//! With group commit on, sends queue to a few writer tasks (a conversation always goes to
//! the same one) which take everything queued, up to `max_batch`, and commit it as one
//! transaction: a batch is only ever waiting for the previous one, so under load batches
//! grow and the cost of a commit is shared, and alone a message waits for nothing. Rows
//! are locked in conversation order, so writers (and nodes) never deadlock. A batch that
//! fails answers every sender with the error: nothing unacknowledged is reported stored,
//! and nothing acknowledged is lost.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::NaiveDateTime;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot};
use xcore_db::{Backend, Database, with_conn};

use crate::error::{Error, Result};
use crate::model::{ConversationId, Message, UserId};
use crate::schema::{NewMessageRow, conversations, members};

/// A message ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub conversation: ConversationId,
    pub sender: UserId,
    pub body: String,
    /// The attachment, serialized.
    pub attachment: Option<String>,
    pub created_at: NaiveDateTime,
}

struct Job {
    message: Pending,
    reply: oneshot::Sender<Result<Message>>,
}

/// Where sends go to be committed.
#[derive(Debug)]
pub(crate) struct Committer {
    db: Database,
    /// One queue per writer task (none when group commit is off), made on the first send.
    lanes: OnceLock<Vec<mpsc::Sender<Job>>>,
    max_batch: usize,
    /// How many writer tasks; 0 when group commit is off.
    writers: usize,
}

impl Committer {
    /// `writers` batches commit at once (0: one on SQLite, four on PostgreSQL); no writer
    /// when `group` is off. Writers start on the first send, inside the runtime.
    pub fn new(db: Database, group: bool, max_batch: usize, writers: usize) -> Self {
        let writers = match (writers, db.backend()) {
            (0, Backend::Sqlite) => 1,
            (0, Backend::Postgres) => 4,
            (writers, _) => writers,
        };
        Self { db, lanes: OnceLock::new(), max_batch, writers: if group { writers } else { 0 } }
    }

    /// The writers' queues, started on first use (inside the runtime).
    fn lanes(&self) -> &[mpsc::Sender<Job>] {
        self.lanes.get_or_init(|| start_writers(&self.db, self.writers, self.max_batch))
    }

    /// Commits `message`: its stored form once the transaction holding it has committed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownConversation`] when the conversation does not exist or the sender
    /// is not a member of it; [`Error::Store`] when the transaction failed (nothing is
    /// stored); [`Error::Stopped`] when the writers are gone.
    pub async fn commit(&self, message: Pending) -> Result<Message> {
        let lanes = self.lanes();
        if lanes.is_empty() {
            return commit_batch(&self.db, vec![message])
                .await?
                .pop()
                .unwrap_or(Err(Error::Stopped));
        }
        let lane =
            usize::try_from(message.conversation.rem_euclid(lanes.len() as i64)).unwrap_or(0);
        let (reply, answer) = oneshot::channel();
        lanes[lane].send(Job { message, reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.unwrap_or(Err(Error::Stopped))
    }
}

/// Starts `writers` writer tasks over `db`: the senders of their queues.
fn start_writers(db: &Database, writers: usize, max_batch: usize) -> Vec<mpsc::Sender<Job>> {
    (0..writers)
        .map(|_| {
            let (sender, receiver) = mpsc::channel(max_batch * 4);
            tokio::spawn(write(db.clone(), receiver, max_batch));
            sender
        })
        .collect()
}

/// One writer: commits whatever is queued, as one batch, until its queue closes.
async fn write(db: Database, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut jobs, max_batch).await > 0 {
        let (batch, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|job| (job.message, job.reply)).unzip();
        match commit_batch(&db, batch).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(plugin = "messaging", %error, count = replies.len(),
                    "a batch of messages could not be stored");
                for reply in replies {
                    let _ = reply.send(Err(Error::Store(error.to_string())));
                }
            }
        }
    }
}

/// Stores `batch` in one transaction: per message, its stored form or why it was refused.
async fn commit_batch(db: &Database, batch: Vec<Pending>) -> Result<Vec<Result<Message>>> {
    let mut ids: Vec<ConversationId> = batch.iter().map(|message| message.conversation).collect();
    ids.sort_unstable();
    ids.dedup();
    let senders: Vec<&str> = {
        let unique: HashSet<&str> = batch.iter().map(|message| message.sender.as_str()).collect();
        unique.into_iter().collect()
    };
    let backend = db.backend();
    let mut conn = db.get().await?;
    let (assigned, stored) = with_conn!(conn, c => {
        c.transaction::<_, diesel::result::Error, _>(async |c| {
            // Lock each conversation's row, in id order, reading where it stands.
            let mut last: HashMap<ConversationId, i64> = HashMap::with_capacity(ids.len());
            for &id in &ids {
                let seq: Option<i64> = diesel::update(conversations::table.find(id))
                    .set(conversations::last_seq.eq(conversations::last_seq))
                    .returning(conversations::last_seq)
                    .get_result(c)
                    .await
                    .optional()?;
                if let Some(seq) = seq {
                    last.insert(id, seq);
                }
            }
            let found: Vec<ConversationId> = last.keys().copied().collect();
            let membership: HashSet<(ConversationId, String)> = members::table
                .filter(members::conversation_id.eq_any(&found))
                .filter(members::user_id.eq_any(&senders))
                .select((members::conversation_id, members::user_id))
                .load::<(ConversationId, String)>(c)
                .await?
                .into_iter()
                .collect();
            let first = last.clone();
            // Per message of the batch, its sequence number, in the order they were sent.
            let assigned: Vec<Option<i64>> = batch
                .iter()
                .map(|message| {
                    let key = (message.conversation, message.sender.as_str().to_owned());
                    let seq = last.get_mut(&message.conversation).filter(|_| membership.contains(&key))?;
                    *seq += 1;
                    Some(*seq)
                })
                .collect();
            for (&id, &seq) in &last {
                if first.get(&id) != Some(&seq) {
                    diesel::update(conversations::table.find(id))
                        .set(conversations::last_seq.eq(seq))
                        .execute(c)
                        .await?;
                }
            }
            let rows: Vec<NewMessageRow<'_>> = batch
                .iter()
                .zip(&assigned)
                .filter_map(|(message, seq)| Some(new_row(message, (*seq)?)))
                .collect();
            let stored: Vec<Stored> = if rows.is_empty() {
                Vec::new()
            } else {
                // One statement for the whole batch (diesel's own batch insert is not
                // available for SQLite behind diesel-async).
                let mut insert = diesel::sql_query(insert_sql(backend, rows.len())).into_boxed();
                for row in &rows {
                    insert = insert
                        .bind::<BigInt, _>(row.conversation_id)
                        .bind::<BigInt, _>(row.seq)
                        .bind::<Text, _>(row.sender_id)
                        .bind::<Text, _>(row.body)
                        .bind::<Nullable<Text>, _>(row.attachment)
                        .bind::<Timestamp, _>(row.created_at);
                }
                insert.load(c).await?
            };
            Ok((assigned, stored))
        })
        .await
    })?;
    let ids: HashMap<(ConversationId, i64), i64> =
        stored.into_iter().map(|row| ((row.conversation_id, row.seq), row.id)).collect();
    Ok(batch
        .into_iter()
        .zip(assigned)
        .map(|(message, seq)| {
            let seq = seq.ok_or(Error::UnknownConversation(message.conversation))?;
            let id = ids
                .get(&(message.conversation, seq))
                .copied()
                .ok_or_else(|| Error::Store("an inserted message was not returned".to_owned()))?;
            Ok(stored_message(message, id, seq))
        })
        .collect())
}

/// What the batch insert returns per row.
#[derive(diesel::QueryableByName)]
struct Stored {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    conversation_id: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// The insert of `rows` messages with six parameters each, in `backend`'s placeholders.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 40);
    sql.push_str(
        "INSERT INTO messaging_messages \
         (conversation_id, seq, sender_id, body, attachment, created_at, edited_at, deleted) VALUES ",
    );
    let mut parameter = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for _ in 0..6 {
            parameter += 1;
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${parameter}")),
            }
            sql.push_str(", ");
        }
        sql.push_str("NULL, FALSE)");
    }
    sql.push_str(" RETURNING id, conversation_id, seq");
    sql
}

fn new_row(message: &Pending, seq: i64) -> NewMessageRow<'_> {
    NewMessageRow {
        conversation_id: message.conversation,
        seq,
        sender_id: message.sender.as_str(),
        body: &message.body,
        attachment: message.attachment.as_deref(),
        created_at: message.created_at,
    }
}

fn stored_message(message: Pending, id: i64, seq: i64) -> Message {
    Message {
        id,
        conversation_id: message.conversation,
        seq,
        sender_id: message.sender,
        body: message.body,
        attachment: message.attachment.and_then(|text| serde_json::from_str(&text).ok()),
        created_at: message.created_at.and_utc(),
        edited_at: None,
        deleted: false,
    }
}
