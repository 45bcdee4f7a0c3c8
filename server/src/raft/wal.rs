//! The Raft log's files: a write-ahead log of preallocated, zero-filled segment files
//! (`DIR/raft-0000000001.wal`, …), written front to back, one frame (and one `fdatasync`) per
//! batch of changes.
//!
//! # Why not redb
//!
//! The log was a redb table until the durable server's throughput was measured against Redis
//! with `appendfsync always`. A redb commit of one batch writes about nine scattered 4 KiB pages
//! (the B-tree path, the allocator state, the header) and then syncs them: ~390 µs a commit
//! under load on the 2-core bench machine (`strace -T`: ~290 µs of it the `fdatasync`). The same
//! `fdatasync` after one sequential write into a file that was zero-filled beforehand costs
//! ~100 µs there (p50 97 µs, p90 129 µs for 2 KB; appending to a growing file, as Redis does:
//! 153 µs; eight scattered 4 KiB writes: 383 µs). Nothing has to change in the file system's
//! metadata when overwriting zeros, so the sync flushes data only. The log is written on every
//! acknowledged request, so this difference is the durable server's throughput.
//!
//! # Format
//!
//! A segment starts with a 32-byte header: `MAGIC`, its sequence number (u64, as in its name)
//! and its size (u64, the file's length), a CRC-32 of those 24 bytes, and four zero bytes.
//! Frames follow, then zeros to the end of the file. A frame is a 20-byte header (body length
//! u32, CRC-32 of the body u32, frame number u64, CRC-32 of those 16 bytes u32) and a body of
//! records (kind u8, length u32, payload): an entry (`codec::encode_entry`, whose index says
//! where it goes; an entry at or before the last one replaces it and everything after it), a
//! vote, a truncation (`since`, u64) or a purge point (`codec::encode_log_id`). Frame numbers
//! increase by one along the log. All integers are little-endian.
//!
//! A new segment's first frame starts with the vote and the purge point as they are then, so
//! older segments can be deleted once everything they hold is purged.
//!
//! # Damage and torn writes
//!
//! Each frame is one `pwrite` followed by one `fdatasync`, and nothing is acknowledged before
//! its frame's sync returns. So a crash (power loss; `kill -9` loses nothing the kernel has)
//! can tear only the last frame, and only in the last segment: frames after it were never
//! written. On open, the first frame of the last segment that does not check (bad header,
//! wrong number, bad body) ends the log, provided no valid frame with a later number follows
//! it anywhere in the segment; its bytes are zeroed before anything new is written. Any other
//! inconsistency (a segment of the wrong size or with a bad header, a missing segment in the
//! sequence, a bad frame in an earlier segment, a bad frame followed by a valid later one,
//! bytes after the end of an earlier segment, an entry out of sequence) refuses the directory
//! with a message naming the file. Like every log of this kind, a damaged *last* frame cannot
//! be told from a torn one.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use openraft::{Entry, LogId, Vote};

use super::codec;
use super::open_error::OpenError;
use super::{NodeId, TypeConfig};

/// The default segment size (`--log-segment-kib`'s default), for tests that write a log as the
/// server would. At ~100 bytes a command (a heartbeat), one segment holds ~300 000 commands: a
/// few seconds of full load, and a few snapshots' worth (the default `--snapshot-every` is
/// 100 000), after which it is deleted.
#[cfg(test)]
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;
/// What a segment file starts with.
const MAGIC: &[u8; 8] = b"wlraft\x00\x01";
const FILE_HEADER: usize = 32;
const FRAME_HEADER: usize = 20;
/// Record kinds.
const ENTRY: u8 = 1;
const VOTE: u8 = 2;
const TRUNCATE: u8 = 3;
const PURGE: u8 = 4;

/// The name of segment `seq` (in `dir`).
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("raft-{seq:010}.wal"))
}

/// Segment `seq` prepared (zero-filled) before it is needed, not in use yet.
fn prepared_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("raft-{seq:010}.wal.next"))
}

/// The sequence numbers of the segments in `dir`, in order.
///
/// # Errors
///
/// When `dir` cannot be read.
pub(crate) fn segments_in(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir)? {
        let name = item?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_prefix("raft-")
            .and_then(|rest| rest.strip_suffix(".wal"))
            .filter(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok())
        {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// One frame's records, being built, and what the log must remember of them: the highest
/// entry index (to know when its segment is all purged), and the vote and purge point (which
/// every new segment repeats).
#[derive(Debug, Default)]
pub(crate) struct Frame {
    body: Vec<u8>,
    max_index: Option<u64>,
    vote: Option<Vote<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

impl Frame {
    /// Empties the frame, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.body.clear();
        self.max_index = None;
        self.vote = None;
        self.purged = None;
    }

    fn put(&mut self, kind: u8, payload: &[u8]) {
        self.body.push(kind);
        let len = u32::try_from(payload.len()).expect("invariant: a record is under 4 GiB");
        self.body.extend_from_slice(&len.to_le_bytes());
        self.body.extend_from_slice(payload);
    }

    /// Adds an entry.
    pub(crate) fn entry(&mut self, entry: &Entry<TypeConfig>) {
        self.put(ENTRY, &codec::encode_entry(entry));
        self.max_index = self.max_index.max(Some(entry.log_id.index));
    }

    /// Adds a vote.
    pub(crate) fn vote(&mut self, vote: &Vote<NodeId>) {
        self.put(VOTE, &codec::encode_vote(vote));
        self.vote = Some(*vote);
    }

    /// Adds a truncation: every entry from `since` on is gone.
    pub(crate) fn truncate(&mut self, since: u64) {
        self.put(TRUNCATE, &since.to_le_bytes());
    }

    /// Adds a purge point: every entry up to `upto` is gone.
    pub(crate) fn purge(&mut self, upto: &LogId<NodeId>) {
        self.put(PURGE, &codec::encode_log_id(upto));
        if self.purged.is_none_or(|p| p.index < upto.index) {
            self.purged = Some(*upto);
        }
    }
}

/// What the log holds, as read on open.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) entries: BTreeMap<u64, Entry<TypeConfig>>,
    pub(crate) vote: Option<Vote<NodeId>>,
    pub(crate) last_purged: Option<LogId<NodeId>>,
    /// No segment existed: a new log.
    pub(crate) created: bool,
}

impl Replayed {
    /// Applies one record; an entry's index is returned.
    fn apply(&mut self, kind: u8, payload: &[u8]) -> Result<Option<u64>, String> {
        match kind {
            ENTRY => {
                let entry = codec::decode_entry(payload).map_err(|e| format!("an entry: {e}"))?;
                let index = entry.log_id.index;
                // Entries follow each other; an entry at or before the last one replaces it
                // and what follows. The first entry read may come after a gap: the segments
                // before it may have been deleted once purged, and the purge point that covers
                // them may come later in the log. `Wal::open` checks the gap at the end.
                if let Some(&last) = self.entries.keys().next_back() {
                    if index > last + 1 {
                        return Err(format!(
                            "log entry {index}: out of sequence (expected {})",
                            last + 1
                        ));
                    }
                    if index <= last {
                        self.entries.split_off(&index);
                    }
                }
                if self.last_purged.is_some_and(|p| index <= p.index) {
                    return Err(format!("log entry {index}: at or before the purge point"));
                }
                self.entries.insert(index, entry);
                return Ok(Some(index));
            }
            VOTE => {
                self.vote =
                    Some(codec::decode_vote(payload).map_err(|e| format!("the vote: {e}"))?);
            }
            TRUNCATE => {
                let since = <[u8; 8]>::try_from(payload)
                    .map(u64::from_le_bytes)
                    .map_err(|_| "a truncation: wrong length".to_owned())?;
                self.entries.split_off(&since);
            }
            PURGE => {
                let upto =
                    codec::decode_log_id(payload).map_err(|e| format!("the purge point: {e}"))?;
                if self.last_purged.is_none_or(|p| p.index < upto.index) {
                    self.last_purged = Some(upto);
                }
                self.entries = self.entries.split_off(&(upto.index + 1));
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        Ok(None)
    }
}

/// A segment in use: its number and the highest entry index written to it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u64,
    max_index: Option<u64>,
}

/// The log's files, for whoever writes them (`log_store::Writer`).
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Oldest first; the last one is being written.
    segments: VecDeque<Segment>,
    file: File,
    /// `file`'s length (a segment made for one oversized frame is larger than usual).
    size: u64,
    /// Where the next frame goes in `file`.
    offset: u64,
    next_frame: u64,
    /// The vote and purge point as last written, repeated at the start of each new segment.
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    /// The next segment, being zero-filled on its own thread.
    preparing: Option<JoinHandle<io::Result<()>>>,
    /// The frame being written (kept, so its allocation is).
    frame: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir` (creating its first segment if there is none) and reads it.
    ///
    /// # Errors
    ///
    /// A message naming the file at fault when the log is damaged, foreign or unreadable.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Replayed), OpenError> {
        remove_leftovers(dir).map_err(|e| OpenError::at(dir, e))?;
        let mut seqs = segments_in(dir).map_err(|e| OpenError::at(dir, e))?;
        let mut replayed = Replayed {
            created: seqs.is_empty(),
            ..Replayed::default()
        };
        if seqs.is_empty() {
            let path = segment_path(dir, 1);
            create_segment(&path, 1, segment_bytes).map_err(|e| OpenError::at(&path, e))?;
            sync_dir(dir).map_err(|e| OpenError::at(dir, e))?;
            seqs.push(1);
        }
        for pair in seqs.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(OpenError::at(
                    &segment_path(dir, pair[0] + 1),
                    "missing: the log's segments have a gap",
                ));
            }
        }
        let mut segments = VecDeque::new();
        let mut next_frame = None;
        let mut end = FILE_HEADER as u64;
        for (n, seq) in seqs.iter().copied().enumerate() {
            let path = segment_path(dir, seq);
            let last = n + 1 == seqs.len();
            let bytes = fs::read(&path).map_err(|e| OpenError::at(&path, e))?;
            let read = read_segment(&bytes, seq, last, &mut next_frame, &mut replayed)
                .map_err(|e| OpenError::at(&path, format!("damaged ({e})")))?;
            segments.push_back(Segment {
                seq,
                max_index: read.max_index,
            });
            if last {
                end = read.end as u64;
                if let Some(torn) = read.torn {
                    tracing::warn!(
                        file = %path.display(),
                        offset = end,
                        bytes = torn,
                        "the log ended in a torn write (a crash during its sync); it was never acknowledged and is dropped"
                    );
                    let file = open_rw(&path).map_err(|e| OpenError::at(&path, e))?;
                    file.write_all_at(&vec![0; torn], end)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| OpenError::at(&path, e))?;
                }
            }
        }
        // What the purge point does not cover must all be here: segments are deleted only once
        // a purge covers them, and the first one is segment 1 until then.
        let first_path = segment_path(dir, seqs[0]);
        match (replayed.last_purged, replayed.entries.keys().next()) {
            (Some(purged), Some(first)) if *first != purged.index + 1 => {
                return Err(OpenError::at(
                    &first_path,
                    format!(
                        "damaged (its first entry is {first}, but the log is purged only up to {}: \
                         a segment before it is missing)",
                        purged.index
                    ),
                ));
            }
            (None, _) if seqs[0] != 1 => {
                return Err(OpenError::at(
                    &segment_path(dir, 1),
                    "missing (nothing was purged, so the log starts there)",
                ));
            }
            _ => {}
        }
        let current = segments.back().map_or(1, |s| s.seq);
        let path = segment_path(dir, current);
        let file = open_rw(&path).map_err(|e| OpenError::at(&path, e))?;
        let size = file.metadata().map_err(|e| OpenError::at(&path, e))?.len();
        let wal = Self {
            dir: dir.to_owned(),
            segment_bytes,
            segments,
            file,
            size,
            offset: end,
            next_frame: next_frame.unwrap_or(1),
            vote: replayed.vote,
            last_purged: replayed.last_purged,
            preparing: None,
            frame: Vec::new(),
        };
        Ok((wal, replayed))
    }

    /// Writes `frame` and syncs it.
    ///
    /// # Errors
    ///
    /// When the file system refuses: the log is then unusable (the caller stops the server).
    pub(crate) fn write(&mut self, frame: &Frame) -> io::Result<()> {
        let needed = (FRAME_HEADER + frame.body.len()) as u64;
        if self.offset + needed > self.size {
            // The state first, so the segments before this one are no longer needed for it.
            let mut head = Frame::default();
            if let Some(vote) = &self.vote {
                head.vote(vote);
            }
            if let Some(purged) = &self.last_purged {
                head.purge(purged);
            }
            head.body.extend_from_slice(&frame.body);
            self.roll((FRAME_HEADER + head.body.len()) as u64)?;
            self.write_frame(&head.body)?;
        } else {
            self.write_frame(&frame.body)?;
        }
        if let Some(current) = self.segments.back_mut() {
            current.max_index = current.max_index.max(frame.max_index);
        }
        if frame.vote.is_some() {
            self.vote = frame.vote;
        }
        if let Some(purged) = frame.purged {
            if self.last_purged.is_none_or(|p| p.index < purged.index) {
                self.last_purged = Some(purged);
            }
            self.forget_purged();
        }
        if self.preparing.is_none() && self.offset > self.segment_bytes / 2 {
            let seq = self.current_seq() + 1;
            let (path, bytes) = (prepared_path(&self.dir, seq), self.segment_bytes);
            self.preparing = Some(
                std::thread::Builder::new()
                    .name("raft-log-prepare".to_owned())
                    .spawn(move || create_segment(&path, seq, bytes))?,
            );
        }
        Ok(())
    }

    fn current_seq(&self) -> u64 {
        self.segments.back().map_or(1, |s| s.seq)
    }

    fn write_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let len = u32::try_from(body.len()).map_err(|_| io::Error::other("a frame over 4 GiB"))?;
        // One buffer for every frame: one `pwrite` a frame, and no allocation per batch.
        let frame = &mut self.frame;
        frame.clear();
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(&self.next_frame.to_le_bytes());
        let check = crc32fast::hash(&frame[..16]);
        frame.extend_from_slice(&check.to_le_bytes());
        frame.extend_from_slice(body);
        self.file.write_all_at(frame, self.offset)?;
        self.file.sync_data()?;
        self.offset += frame.len() as u64;
        self.next_frame += 1;
        Ok(())
    }

    /// Moves to a new segment with room for `needed` bytes of frame.
    fn roll(&mut self, needed: u64) -> io::Result<()> {
        let seq = self.current_seq() + 1;
        let path = segment_path(&self.dir, seq);
        let prepared = match self.preparing.take() {
            Some(preparing) => preparing
                .join()
                .map_err(|_| io::Error::other("the segment preparer panicked"))?
                .is_ok(),
            None => false,
        };
        let fits = FILE_HEADER as u64 + needed <= self.segment_bytes;
        let size = if prepared && fits {
            fs::rename(prepared_path(&self.dir, seq), &path)?;
            self.segment_bytes
        } else {
            let _ = fs::remove_file(prepared_path(&self.dir, seq));
            let size = self
                .segment_bytes
                .max((FILE_HEADER as u64 + needed).next_multiple_of(4096));
            create_segment(&path, seq, size)?;
            size
        };
        sync_dir(&self.dir)?;
        self.file = open_rw(&path)?;
        self.size = size;
        self.offset = FILE_HEADER as u64;
        self.segments.push_back(Segment {
            seq,
            max_index: None,
        });
        Ok(())
    }

    /// Deletes the oldest segments whose entries are all purged (never the one being written).
    ///
    /// Oldest first, each deletion made durable before the next, so a crash never leaves a
    /// gap in the sequence. A deletion that fails is only logged (it is retried after the next
    /// purge): the log is whole without it.
    fn forget_purged(&mut self) {
        let Some(purged) = self.last_purged else {
            return;
        };
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.max_index.is_none_or(|max| max <= purged.index))
        {
            let Some(oldest) = self.segments.front().copied() else {
                return;
            };
            let path = segment_path(&self.dir, oldest.seq);
            let removed = match fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => sync_dir(&self.dir),
            };
            if let Err(error) = removed {
                tracing::warn!(file = %path.display(), %error, "cannot delete a purged log segment");
                return;
            }
            self.segments.pop_front();
        }
    }
}

impl Drop for Wal {
    /// Waits for the segment being prepared, so a log opened again on the same directory
    /// never races it.
    fn drop(&mut self) {
        if let Some(preparing) = self.preparing.take() {
            let _ = preparing.join();
        }
    }
}

/// What reading one segment found.
struct SegmentRead {
    /// Where its frames end.
    end: usize,
    max_index: Option<u64>,
    /// Bytes of a torn last frame (last segment only) to zero from `end`.
    torn: Option<usize>,
}

/// Reads segment `seq`'s frames into `replayed`; `next_frame` is the number the first frame
/// must have (`None`: the first segment read, any).
fn read_segment(
    bytes: &[u8],
    seq: u64,
    last: bool,
    next_frame: &mut Option<u64>,
    replayed: &mut Replayed,
) -> Result<SegmentRead, String> {
    let header = bytes
        .get(..FILE_HEADER)
        .ok_or_else(|| format!("{} bytes, shorter than a header", bytes.len()))?;
    if &header[..8] != MAGIC {
        return Err("not a worklease log segment".to_owned());
    }
    if crc32fast::hash(&header[..24]) != u32_at(header, 24) || header[28..] != [0; 4] {
        return Err("bad segment header".to_owned());
    }
    if u64_at(header, 8) != seq {
        return Err(format!("holds segment {} (renamed?)", u64_at(header, 8)));
    }
    let size = u64_at(header, 16);
    if size != bytes.len() as u64 {
        return Err(format!(
            "{} bytes, but its header says {size} (truncated?)",
            bytes.len()
        ));
    }
    let mut at = FILE_HEADER;
    let mut max_index = None;
    loop {
        let frame = check_frame(bytes, at, *next_frame);
        let Some((body, number)) = frame else {
            break;
        };
        let mut rest = body;
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err(format!("frame {number}: a cut record"));
            }
            let kind = rest[0];
            let len = u32_at(rest, 1) as usize;
            let payload = rest
                .get(5..5 + len)
                .ok_or_else(|| format!("frame {number}: a cut record"))?;
            let index = replayed
                .apply(kind, payload)
                .map_err(|e| format!("frame {number}: {e}"))?;
            max_index = max_index.max(index);
            rest = &rest[5 + len..];
        }
        at += FRAME_HEADER + body.len();
        *next_frame = Some(number + 1);
    }
    // `at` is the first position without a good frame: the end, or a torn last frame.
    let tail = &bytes[at..];
    let Some(last_nonzero) = last_nonzero(tail) else {
        return Ok(SegmentRead {
            end: at,
            max_index,
            torn: None,
        });
    };
    if !last {
        return Err(format!("bytes after the last frame, at offset {at}"));
    }
    // A torn frame is the last one written: no good frame follows it anywhere.
    let expected = next_frame.unwrap_or(0);
    for later in at + 1..=at + last_nonzero {
        if later + FRAME_HEADER <= bytes.len() {
            let header = &bytes[later..later + FRAME_HEADER];
            if crc32fast::hash(&header[..16]) == u32_at(header, 16)
                && u64_at(header, 8) >= expected
                && header.iter().any(|b| *b != 0)
            {
                return Err(format!(
                    "frame at offset {at} is damaged, and a later frame follows it at {later}"
                ));
            }
        }
    }
    Ok(SegmentRead {
        end: at,
        max_index,
        torn: Some(last_nonzero + 1),
    })
}

/// The little-endian `u32` at `at` (the caller checked the length).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("invariant: 4 bytes"))
}

/// The little-endian `u64` at `at` (the caller checked the length).
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("invariant: 8 bytes"))
}

/// Where the last non-zero byte of `bytes` is. A segment is mostly zeros after its frames;
/// comparing 64 bytes at a time reads the 32 MiB of a new one in ~2 ms instead of ~30.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let whole = bytes.len() / BLOCK * BLOCK;
    if let Some(at) = bytes[whole..].iter().rposition(|b| *b != 0) {
        return Some(whole + at);
    }
    let block = bytes[..whole]
        .chunks_exact(BLOCK)
        .rposition(|chunk| chunk != [0; BLOCK])?;
    let start = block * BLOCK;
    bytes[start..start + BLOCK]
        .iter()
        .rposition(|b| *b != 0)
        .map(|at| start + at)
}

/// The body and number of the good frame at `at`, if there is one: a header that checks, the
/// expected number, a body within the file that checks.
fn check_frame(bytes: &[u8], at: usize, expected: Option<u64>) -> Option<(&[u8], u64)> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    if header.iter().all(|b| *b == 0) || crc32fast::hash(&header[..16]) != u32_at(header, 16) {
        return None;
    }
    let number = u64_at(header, 8);
    if expected.is_some_and(|expected| expected != number) {
        return None;
    }
    let len = u32_at(header, 0) as usize;
    let body = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
    (crc32fast::hash(body) == u32_at(header, 4)).then_some((body, number))
}

/// Creates segment `seq` at `path`: its header, then zeros to `size` bytes, synced.
fn create_segment(path: &Path, seq: u64, size: u64) -> io::Result<()> {
    let mut header = Vec::with_capacity(FILE_HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&size.to_le_bytes());
    let check = crc32fast::hash(&header);
    header.extend_from_slice(&check.to_le_bytes());
    header.resize(FILE_HEADER, 0);
    let tmp = path.with_extension("creating");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // Real zeros, not a sparse file or fallocate's unwritten extents: overwriting written
    // blocks is what makes each later sync cheap (see the module's documentation).
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], written)?;
        written += n as u64;
    }
    file.write_all_at(&header, 0)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Deletes segments a crash left half made (`*.creating`) or prepared but unused (`*.next`).
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("raft-") && (name.ends_with(".creating") || name.ends_with(".wal.tmp"))
        {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Makes the directory's entries (a new or renamed segment, a deleted one) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A blank entry of term 1 at `index`, for tests of the log.
#[cfg(test)]
pub(crate) fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Blank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("worklease-wal-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("a temporary directory");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn last_nonzero_finds_the_last_nonzero_byte_wherever_it_is() {
        for len in [0, 1, 63, 64, 65, 200] {
            assert_eq!(last_nonzero(&vec![0; len]), None);
            for at in 0..len {
                let mut bytes = vec![0; len];
                bytes[at] = 7;
                if at > 0 {
                    bytes[at / 2] = 1;
                }
                assert_eq!(last_nonzero(&bytes), Some(at), "len {len}, at {at}");
            }
        }
    }

    /// Small segments, so a few frames span several.
    const SMALL: u64 = 512;

    /// Writes `frames` frames of three entries each; returns each frame's entry indices.
    fn write_frames(dir: &Path, frames: u64) -> Vec<Vec<u64>> {
        let (mut wal, _) = Wal::open(dir, SMALL).expect("opens");
        (0..frames)
            .map(|frame| write_frame(&mut wal, frame))
            .collect()
    }

    /// Writes frame number `frame` (from 0) of three entries; returns their indices.
    fn write_frame(wal: &mut Wal, frame: u64) -> Vec<u64> {
        let mut written = Frame::default();
        let indices: Vec<u64> = (frame * 3 + 1..=frame * 3 + 3).collect();
        for index in &indices {
            written.entry(&blank(*index));
        }
        wal.write(&written).expect("writes");
        indices
    }

    fn indices(replayed: &Replayed) -> Vec<u64> {
        replayed.entries.keys().copied().collect()
    }

    #[test]
    fn entries_votes_truncations_and_purges_read_back_across_segments() {
        let dir = TempDir::new("roundtrip");
        let frames = write_frames(&dir.0, 30);
        assert!(
            segments_in(&dir.0).expect("lists").len() > 3,
            "spans segments"
        );
        {
            let (mut wal, replayed) = Wal::open(&dir.0, SMALL).expect("reopens");
            assert_eq!(indices(&replayed), frames.concat());
            let mut frame = Frame::default();
            frame.vote(&Vote::new_committed(3, 2));
            frame.truncate(50);
            frame.entry(&blank(50));
            frame.purge(&blank(40).log_id);
            wal.write(&frame).expect("writes");
            // Segments whose entries are all purged are gone; the vote and purge point
            // survive them (each new segment repeats them).
            for _ in 0..20 {
                wal.write(&Frame::default()).expect("writes");
            }
            let mut frame = Frame::default();
            frame.purge(&blank(45).log_id);
            wal.write(&frame).expect("writes");
        }
        let (_, replayed) = Wal::open(&dir.0, SMALL).expect("reopens");
        assert_eq!(indices(&replayed), (46..=50).collect::<Vec<_>>());
        assert_eq!(replayed.vote, Some(Vote::new_committed(3, 2)));
        assert_eq!(replayed.last_purged, Some(blank(45).log_id));
        let first = segments_in(&dir.0).expect("lists")[0];
        assert!(
            first > 1,
            "purged segments are deleted (first left: {first})"
        );
    }

    /// A segment is deleted once a purge covers it, though the next segment starts with an
    /// older purge point: the log still reads, from the purge point on.
    #[test]
    fn a_log_whose_first_segments_were_purged_reads_from_the_purge_point() {
        let dir = TempDir::new("purged");
        let mut frames = write_frames(&dir.0, 1);
        {
            // An early purge point, which every later segment starts with.
            let (mut wal, _) = Wal::open(&dir.0, SMALL).expect("reopens");
            let mut frame = Frame::default();
            frame.purge(&blank(1).log_id);
            wal.write(&frame).expect("writes");
            for frame in 1..30 {
                frames.push(write_frame(&mut wal, frame));
            }
        }
        frames[0].remove(0);
        let first_segment_end = {
            let (_, replayed) = Wal::open(&dir.0, SMALL).expect("reopens");
            assert_eq!(indices(&replayed), frames.concat());
            // The highest index in segment 1: what a purge must cover to delete it.
            let bytes = fs::read(segment_path(&dir.0, 1)).expect("reads");
            let mut alone = Replayed::default();
            read_segment(&bytes, 1, true, &mut None, &mut alone).expect("reads alone");
            *alone.entries.keys().next_back().expect("entries")
        };
        {
            let (mut wal, _) = Wal::open(&dir.0, SMALL).expect("reopens");
            let mut frame = Frame::default();
            frame.purge(&blank(first_segment_end).log_id);
            wal.write(&frame).expect("writes");
        }
        assert!(!segment_path(&dir.0, 1).exists(), "segment 1 is deleted");
        let (_, replayed) = Wal::open(&dir.0, SMALL).expect("reads without segment 1");
        assert_eq!(
            indices(&replayed),
            (first_segment_end + 1..=90).collect::<Vec<_>>()
        );
        // Segment 2 deleted by hand, not by a purge: refused.
        fs::remove_file(segment_path(&dir.0, 2)).expect("removes");
        let message = Wal::open(&dir.0, SMALL)
            .expect_err("a segment is missing")
            .to_string();
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn a_torn_last_frame_is_dropped_and_zeroed_and_the_log_goes_on() {
        let dir = TempDir::new("torn");
        let frames = write_frames(&dir.0, 4);
        let last = *segments_in(&dir.0)
            .expect("lists")
            .last()
            .expect("a segment");
        let path = segment_path(&dir.0, last);
        let mut bytes = fs::read(&path).expect("reads");
        let end = bytes.iter().rposition(|b| *b != 0).expect("frames") + 1;
        // The last frame's last bytes never reached the disk.
        for byte in &mut bytes[end - 8..end] {
            *byte = 0;
        }
        fs::write(&path, &bytes).expect("writes");
        {
            let (mut wal, replayed) = Wal::open(&dir.0, SMALL).expect("opens");
            assert_eq!(indices(&replayed), frames[..3].concat());
            let mut frame = Frame::default();
            frame.entry(&blank(10));
            wal.write(&frame).expect("writes");
        }
        let (_, replayed) = Wal::open(&dir.0, SMALL).expect("reopens");
        assert_eq!(indices(&replayed), (1..=10).collect::<Vec<_>>());
    }

    /// Every single flipped bit anywhere in the log either refuses it, naming the file, or
    /// (only in the last frame, or in the zeros after it) reads a prefix of what was written:
    /// the last frame may be torn, nothing before it may be lost.
    #[test]
    fn any_flipped_bit_is_refused_unless_it_may_be_a_torn_last_frame() {
        let dir = TempDir::new("flips");
        let frames = write_frames(&dir.0, 20);
        let all = frames.concat();
        let seqs = segments_in(&dir.0).expect("lists");
        assert!(seqs.len() >= 2, "the log spans segments: {seqs:?}");
        let originals: Vec<Vec<u8>> = seqs
            .iter()
            .map(|seq| fs::read(segment_path(&dir.0, *seq)).expect("reads"))
            .collect();
        let last_bytes = originals.last().expect("a segment");
        let end = last_bytes.iter().rposition(|b| *b != 0).expect("frames") + 1;
        // Where the last frame starts: after the frames before it in the last segment.
        let last_frame_start = {
            let mut at = FILE_HEADER;
            loop {
                let len = u32_at(last_bytes, at) as usize;
                let next = at + FRAME_HEADER + len;
                if next >= end {
                    break at;
                }
                at = next;
            }
        };
        let trial = TempDir::new("flips-trial");
        for (n, seq) in seqs.iter().enumerate() {
            let last = n + 1 == seqs.len();
            for at in 0..originals[n].len() {
                // Zeros far past the end are all alike; a sample of them is enough.
                if at > end + 64 && at % 61 != 0 {
                    continue;
                }
                for (m, other) in seqs.iter().enumerate() {
                    fs::write(segment_path(&trial.0, *other), &originals[m]).expect("copies");
                }
                let path = segment_path(&trial.0, *seq);
                let mut bytes = originals[n].clone();
                bytes[at] ^= 1 << (at % 8);
                fs::write(&path, &bytes).expect("writes");
                match Wal::open(&trial.0, SMALL) {
                    Err(refused) => assert_eq!(refused.path, path, "{refused}"),
                    Ok((_, replayed)) => {
                        let read = indices(&replayed);
                        assert!(
                            last && at >= last_frame_start,
                            "segment {seq} byte {at}: read {read:?} instead of refusing"
                        );
                        assert!(
                            all.starts_with(&read),
                            "byte {at}: {read:?} is not a prefix"
                        );
                        assert!(
                            read.len() + 3 >= all.len(),
                            "byte {at}: lost more than the last frame"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_missing_segment_or_a_foreign_file_is_refused() {
        let dir = TempDir::new("missing");
        write_frames(&dir.0, 20);
        let seqs = segments_in(&dir.0).expect("lists");
        assert!(seqs.len() >= 3, "the log spans segments: {seqs:?}");
        let middle = segment_path(&dir.0, seqs[1]);
        let saved = fs::read(&middle).expect("reads");
        fs::remove_file(&middle).expect("removes");
        let refused = Wal::open(&dir.0, SMALL).expect_err("a gap");
        assert_eq!(refused.path, middle, "{refused}");
        // The same segment under another number.
        fs::write(&middle, &saved).expect("restores");
        let first = segment_path(&dir.0, seqs[0]);
        fs::copy(&middle, &first).expect("copies");
        let refused = Wal::open(&dir.0, SMALL).expect_err("renamed");
        assert_eq!(refused.path, first, "{refused}");
    }
}
