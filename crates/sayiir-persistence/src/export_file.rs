//! The portable export file: one store's workflows as JSON lines, readable by every backend.
//!
//! # Format, version 1
//! UTF-8 text, one JSON object per line (JSON Lines), each with exactly one key saying what
//! the line is:
//!
//! 1. First line, `{"header": {"format": "sayiir-export", "version": 1, "exported_at":
//!    "<RFC 3339>", "source": "<db.system.name of the store>"}}`.
//! 2. One line per instance, `{"workflow": {...}}`, with the fields of a
//!    [`WorkflowRecord`]: `instance_id`; `snapshot`, the snapshot as this crate's
//!    [`codec`](crate::codec) blob (MessagePack with named fields behind a format marker),
//!    base64 (RFC 4648, with padding), absent for an instance that only has events;
//!    `trace_parent` (the codec leaves it out of the blob); `archived_results`, task id →
//!    base64 output; `cancel_request` and `pause_request`, `{"reason", "requested_by",
//!    "requested_at"}` with the time in RFC 3339; `events`, signal name → base64 payloads,
//!    oldest first. Empty fields are left out.
//! 3. Last line, `{"end": {"workflows": N, "unstarted_queues": M, "events": E}}`: how many
//!    workflow lines with and without a snapshot came before it, and how many events they
//!    hold. A file without it, or whose counts differ, was cut short and is refused.
//!
//! Task outputs, inputs and event payloads are opaque bytes, so they travel as base64; the
//! snapshot travels as the codec's blob so that every field, present and future, survives
//! without this format naming them. Claims are not exported. Line order carries no meaning.
//!
//! A reader refuses a file whose `version` is newer than [`FORMAT_VERSION`], naming both.
//! This module only turns lines into values and back; reading and writing files is the
//! caller's (the admin CLI streams them, so memory stays flat however large the store).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sayiir_core::snapshot::SignalRequest;
use serde::{Deserialize, Serialize};

use crate::BackendError;
use crate::codec::{decode_snapshot, encode_snapshot};
use crate::transfer::WorkflowRecord;

/// The `format` of the header line.
pub const FORMAT_NAME: &str = "sayiir-export";

/// The newest format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The format version the file is written in.
    pub version: u32,
    /// When the export started, RFC 3339.
    pub exported_at: String,
    /// The `db.system.name` of the store it was read from (`sqlite`, `postgresql`, …).
    pub source: String,
}

impl Header {
    /// A header of the current version, stamped now.
    #[must_use]
    pub fn now(source: &str) -> Self {
        Self {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            exported_at: Utc::now().to_rfc3339(),
            source: source.to_string(),
        }
    }
}

/// The last line of an export file: what came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Workflow lines with a snapshot.
    pub workflows: u64,
    /// Workflow lines with only buffered events.
    pub unstarted_queues: u64,
    /// Buffered events across all workflow lines.
    pub events: u64,
}

impl Summary {
    /// Counts `record` in the summary.
    pub fn count(&mut self, record: &WorkflowRecord) {
        if record.snapshot.is_some() {
            self.workflows += 1;
        } else {
            self.unstarted_queues += 1;
        }
        self.events += record.event_count() as u64;
    }
}

/// One line of an export file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Line {
    /// The first line.
    Header(Header),
    /// One instance.
    Workflow(Box<WorkflowRecord>),
    /// The last line.
    End(Summary),
}

/// A pending request as written in the file.
#[derive(Debug, Serialize, Deserialize)]
struct RequestLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
    requested_at: DateTime<Utc>,
}

impl From<&SignalRequest> for RequestLine {
    fn from(request: &SignalRequest) -> Self {
        Self {
            reason: request.reason.clone(),
            requested_by: request.requested_by.clone(),
            requested_at: request.requested_at,
        }
    }
}

impl From<RequestLine> for SignalRequest {
    fn from(line: RequestLine) -> Self {
        Self {
            reason: line.reason,
            requested_by: line.requested_by,
            requested_at: line.requested_at,
        }
    }
}

/// A workflow as written in the file.
#[derive(Debug, Serialize, Deserialize)]
struct RecordLine {
    instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_parent: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    archived_results: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancel_request: Option<RequestLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pause_request: Option<RequestLine>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    events: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LineJson {
    Header(Header),
    Workflow(RecordLine),
    End(Summary),
}

fn to_json(line: &LineJson) -> Result<String, BackendError> {
    serde_json::to_string(line)
        .map_err(|e| BackendError::Serialization(format!("cannot write an export line: {e}")))
}

/// The header line (without its newline).
///
/// # Errors
/// `Serialization` if it cannot be written (it always can).
pub fn encode_header(header: &Header) -> Result<String, BackendError> {
    to_json(&LineJson::Header(header.clone()))
}

/// The end line (without its newline).
///
/// # Errors
/// `Serialization` if it cannot be written (it always can).
pub fn encode_end(summary: &Summary) -> Result<String, BackendError> {
    to_json(&LineJson::End(*summary))
}

/// The line of `record` (without its newline).
///
/// # Errors
/// `Serialization` naming the instance if its snapshot cannot be encoded.
pub fn encode_record(record: &WorkflowRecord) -> Result<String, BackendError> {
    let encode = |bytes: &Bytes| BASE64.encode(bytes);
    let line = RecordLine {
        instance_id: record.instance_id.clone(),
        snapshot: record
            .snapshot
            .as_ref()
            .map(encode_snapshot)
            .transpose()?
            .map(|b| BASE64.encode(b)),
        trace_parent: record.snapshot.as_ref().and_then(|s| s.trace_parent.clone()),
        archived_results: record
            .archived_results
            .iter()
            .map(|(task, output)| (task.clone(), encode(output)))
            .collect(),
        cancel_request: record.cancel_request.as_ref().map(RequestLine::from),
        pause_request: record.pause_request.as_ref().map(RequestLine::from),
        events: record
            .events
            .iter()
            .map(|(name, queue)| (name.clone(), queue.iter().map(encode).collect()))
            .collect(),
    };
    to_json(&LineJson::Workflow(line))
}

/// Reads line `number` (1-based, for messages) of an export file.
///
/// # Errors
/// `Serialization` naming the line (and the instance, once known) when it is not JSON, not
/// one of the three kinds, holds bad base64 or a snapshot that does not decode, or is a
/// header of another format or of a newer version.
pub fn decode_line(number: u64, text: &str) -> Result<Line, BackendError> {
    let fail =
        |what: String| BackendError::Serialization(format!("export file, line {number}: {what}"));
    let json: LineJson = serde_json::from_str(text).map_err(|e| {
        fail(format!("not a line of a Sayiir export ({e}); is this file an export?"))
    })?;
    match json {
        LineJson::Header(header) => {
            if header.format != FORMAT_NAME {
                return Err(fail(format!("format {:?} is not {FORMAT_NAME:?}", header.format)));
            }
            if header.version > FORMAT_VERSION {
                return Err(fail(format!(
                    "format version {} is newer than this tool reads ({FORMAT_VERSION}); \
                     import with a newer sayiir-admin",
                    header.version
                )));
            }
            Ok(Line::Header(header))
        }
        LineJson::End(summary) => Ok(Line::End(summary)),
        LineJson::Workflow(line) => {
            let id = line.instance_id;
            let bytes = |what: &str, text: &str| {
                BASE64
                    .decode(text)
                    .map(Bytes::from)
                    .map_err(|e| fail(format!("instance {id:?}: {what} is not valid base64: {e}")))
            };
            let snapshot = match &line.snapshot {
                Some(text) => {
                    let blob = bytes("the snapshot", text)?;
                    let mut snapshot = decode_snapshot(&id, &blob)
                        .map_err(|e| fail(format!("instance {id:?}: {e}")))?;
                    snapshot.trace_parent = line.trace_parent.clone();
                    Some(snapshot)
                }
                None => None,
            };
            let mut archived_results = BTreeMap::new();
            for (task, output) in &line.archived_results {
                archived_results.insert(task.clone(), bytes(&format!("result {task:?}"), output)?);
            }
            let mut events = BTreeMap::new();
            for (name, queue) in &line.events {
                let payloads = queue
                    .iter()
                    .map(|payload| bytes(&format!("an event of {name:?}"), payload))
                    .collect::<Result<Vec<_>, _>>()?;
                events.insert(name.clone(), payloads);
            }
            Ok(Line::Workflow(Box::new(WorkflowRecord {
                instance_id: id.clone(),
                snapshot,
                archived_results,
                cancel_request: line.cancel_request.map(SignalRequest::from),
                pause_request: line.pause_request.map(SignalRequest::from),
                events,
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;
    use sayiir_core::snapshot::WorkflowSnapshot;

    fn record() -> WorkflowRecord {
        let mut snapshot = WorkflowSnapshot::with_initial_input(
            "order-1".into(),
            "def".into(),
            Bytes::from_static(b"\x00\xffin"),
        );
        snapshot.trace_parent = Some("00-abc-def-01".into());
        let mut record = WorkflowRecord::of_snapshot(snapshot);
        record.pause_request = Some(SignalRequest {
            reason: Some("maintenance".into()),
            requested_by: None,
            requested_at: DateTime::<Utc>::MAX_UTC,
        });
        record.cancel_request = Some(SignalRequest {
            reason: None,
            requested_by: Some("ops".into()),
            requested_at: DateTime::<Utc>::MIN_UTC,
        });
        record.events.insert("approve".into(), vec![Bytes::new(), Bytes::from_static(b"\x01")]);
        record
    }

    #[test]
    fn a_record_reads_back_field_by_field() {
        let original = record();
        let line = encode_record(&original).unwrap();
        assert!(!line.contains('\n'));
        let Line::Workflow(read) = decode_line(2, &line).unwrap() else { panic!("not a record") };
        assert_eq!(read.instance_id, original.instance_id);
        let (a, b) = (read.snapshot.unwrap(), original.snapshot.unwrap());
        assert_eq!(a.trace_parent, b.trace_parent);
        assert_eq!(a.initial_input, b.initial_input);
        assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
        assert_eq!(read.events, original.events);
        for (x, y) in [
            (&read.pause_request, &original.pause_request),
            (&read.cancel_request, &original.cancel_request),
        ] {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert_eq!(
                (&x.reason, &x.requested_by, x.requested_at),
                (&y.reason, &y.requested_by, y.requested_at)
            );
        }
    }

    #[test]
    fn header_and_end_read_back() {
        let header = Header::now("sqlite");
        let Line::Header(read) = decode_line(1, &encode_header(&header).unwrap()).unwrap() else {
            panic!("not a header")
        };
        assert_eq!(read, header);
        let summary = Summary { workflows: 3, unstarted_queues: 1, events: 7 };
        let Line::End(read) = decode_line(9, &encode_end(&summary).unwrap()).unwrap() else {
            panic!("not an end")
        };
        assert_eq!(read, summary);
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let newer =
            r#"{"header":{"format":"sayiir-export","version":99,"exported_at":"x","source":"s"}}"#;
        let error = decode_line(1, newer).unwrap_err().to_string();
        assert!(error.contains("line 1") && error.contains("99"), "{error}");
        let error = decode_line(4, "{\"workflow\":{\"instance_id\":\"a\",\"snapshot\":\"!!\"}}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 4") && error.contains("\"a\"") && error.contains("base64"),
            "{error}"
        );
        let error = decode_line(5, "hello").unwrap_err().to_string();
        assert!(error.contains("line 5") && error.contains("export"), "{error}");
        let other = r#"{"header":{"format":"other","version":1,"exported_at":"x","source":"s"}}"#;
        assert!(decode_line(1, other).unwrap_err().to_string().contains("other"));
    }
}
