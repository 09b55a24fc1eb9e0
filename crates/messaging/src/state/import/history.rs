//! The history part of an import: matching stored messages, adding the file's newer
//! ones in batches, and moving read markers forward.

use super::*;

impl Importer<'_> {
    /// Imports a conversation's messages, `last` being its stored last sequence number,
    /// and `at` the messages' pointer in the file: whether anything changed.
    pub(super) async fn messages(
        &mut self,
        id: i64,
        last: i64,
        entries: &[MessageEntry],
        at: &str,
    ) -> Result<bool> {
        let overlap = usize::try_from(last).unwrap_or(0).min(entries.len());
        let mut changed = false;
        let mut start = 0;
        while start < overlap {
            let end = overlap.min(start + BATCH);
            changed |= self.compare(id, start, &entries[start..end], at).await?;
            start = end;
        }
        for chunk in entries[overlap..].chunks(BATCH) {
            self.insert_messages(id, chunk).await?;
            self.report.messages.created += chunk.len() as u64;
        }
        let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
        if count > last {
            with_conn!(*self.conn, c => {
                diesel::update(conversations::table.find(id))
                    .set(conversations::last_seq.eq(count))
                    .execute(c)
                    .await
            })?;
            changed = true;
        }
        Ok(changed)
    }

    /// Checks that the stored messages `start + 1 ..` of conversation `id` are the file's
    /// `entries`, and takes the file's later edits: whether any was taken.
    async fn compare(
        &mut self,
        id: i64,
        start: usize,
        entries: &[MessageEntry],
        at: &str,
    ) -> Result<bool> {
        let (first, last) = (entries[0].seq, entries[entries.len() - 1].seq);
        let rows: Vec<MessageRow> = with_conn!(*self.conn, c => {
            messages::table
                .filter(messages::conversation_id.eq(id))
                .filter(messages::seq.between(first, last))
                .select(MessageRow::as_select())
                .order(messages::seq)
                .load(c)
                .await
        })?;
        if rows.len() != entries.len() {
            return Err(Error::Store(format!(
                "conversation {id} lacks some of its messages {first} to {last}"
            ))
            .into());
        }
        let mut changed = false;
        for (j, (row, entry)) in rows.iter().zip(entries).enumerate() {
            let stored_at = Time::from_utc(row.created_at.and_utc());
            let same = row.sender_id == entry.sender.as_str()
                && entry.created_at.map_or(row.body == entry.body, |time| time == stored_at);
            if !same {
                return Err(StateError::inconsistent(
                    format!("{at}/{}", start + j),
                    format!(
                        "message {} is stored as sent by `{}` at {}: the file's is another \
                         message, so it does not continue this conversation's history",
                        row.seq,
                        row.sender_id,
                        crate::state::format_time(row.created_at)
                    ),
                ));
            }
            let stored_edit = row.edited_at.map(|time| Time::from_utc(time.and_utc()));
            if row.deleted || entry.edited_at.is_none() || entry.edited_at <= stored_edit {
                self.report.messages.unchanged += 1;
                continue;
            }
            let attachment = entry.attachment.as_ref().map(serde_json::Value::to_string);
            let edited_at = entry.edited_at.map(Time::naive);
            with_conn!(*self.conn, c => {
                diesel::update(messages::table.find(row.id))
                    .set((
                        messages::body.eq(&entry.body),
                        messages::attachment.eq(&attachment),
                        messages::edited_at.eq(edited_at),
                        messages::deleted.eq(entry.deleted),
                    ))
                    .execute(c)
                    .await
            })?;
            self.report.messages.updated += 1;
            changed = true;
        }
        Ok(changed)
    }

    async fn insert_messages(&mut self, id: i64, entries: &[MessageEntry]) -> Result {
        let backend = match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        };
        let sql = insert_sql(backend, entries.len());
        let rows: Vec<(Option<String>, NaiveDateTime, Option<NaiveDateTime>)> = entries
            .iter()
            .map(|entry| {
                (
                    entry.attachment.as_ref().map(serde_json::Value::to_string),
                    entry.created_at.map_or(self.now, Time::naive),
                    entry.edited_at.map(Time::naive),
                )
            })
            .collect();
        with_conn!(*self.conn, c => {
            // One statement per batch (diesel's batch insert is not available for SQLite
            // behind diesel-async).
            let mut insert = diesel::sql_query(&sql).into_boxed();
            for (entry, (attachment, created_at, edited_at)) in entries.iter().zip(&rows) {
                insert = insert
                    .bind::<BigInt, _>(id)
                    .bind::<BigInt, _>(entry.seq)
                    .bind::<Text, _>(entry.sender.as_str())
                    .bind::<Text, _>(&entry.body)
                    .bind::<Nullable<Text>, _>(attachment.as_deref())
                    .bind::<Timestamp, _>(*created_at)
                    .bind::<Nullable<Timestamp>, _>(*edited_at)
                    .bind::<Bool, _>(entry.deleted);
            }
            insert.execute(c).await
        })?;
        Ok(())
    }

    /// Moves the read markers of conversation `id` forward to the file's: whether any
    /// moved.
    pub(super) async fn read(&mut self, id: i64, read: &Pairs<i64>) -> Result<bool> {
        let mut moved = 0;
        for (user, seq) in &read.0 {
            moved += with_conn!(*self.conn, c => {
                diesel::update(
                    members::table
                        .find((id, user.as_str()))
                        .filter(members::last_read_seq.lt(*seq)),
                )
                .set(members::last_read_seq.eq(*seq))
                .execute(c)
                .await
            })? as u64;
        }
        self.report.read_markers += moved;
        Ok(moved > 0)
    }
}

/// The insert of `rows` messages, eight parameters each, in `backend`'s placeholders.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(140 + rows * 50);
    sql.push_str(
        "INSERT INTO messaging_messages \
         (conversation_id, seq, sender_id, body, attachment, created_at, edited_at, deleted) VALUES ",
    );
    let mut parameter = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..8 {
            parameter += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${parameter}")),
            }
        }
        sql.push(')');
    }
    sql
}
