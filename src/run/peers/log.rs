//! A peer's log: written by its supervisor alone, capped by rotation to `log.1`, read whole or
//! followed across rotations.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most a peer's log keeps: past it, the older half moves to `log.1`.
pub const LOG_CAP_BYTES: u64 = 1 << 20;

/// The last `lines` lines of a log, for an error that says why a peer did not start.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(log) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where a log's older part goes when it is rotated: `log.1` beside it.
fn older_log(log: &Path) -> PathBuf {
    let mut older = log.as_os_str().to_owned();
    older.push(".1");
    PathBuf::from(older)
}

/// Copies a peer's output from `output` into its log until end of file, keeping the log under
/// [`LOG_CAP_BYTES`]: past it, the log is renamed `log.1` (replacing the older one) and a new
/// log begins. This is the log's only writer, so a rotation loses and repeats nothing, and a
/// reader that saw the log shrink finds the rest of what it read in `log.1`.
pub fn copy_to_log(mut output: impl Read, log: &Path) -> std::io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    };
    let older = older_log(log);
    let mut file = open()?;
    let mut written = file.metadata()?.len();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match output.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if written > 0 && written + read as u64 > LOG_CAP_BYTES {
            std::fs::rename(log, &older)?;
            file = open()?;
            written = 0;
        }
        std::io::Write::write_all(&mut file, &buffer[..read])?;
        written += read as u64;
    }
}

/// Reads a peer's log as it grows, across rotations by [`copy_to_log`]: what `env logs`
/// prints, and `env logs -f` again and again.
#[derive(Debug, Default)]
pub struct LogFollower {
    position: u64,
    /// The log file read last (device, inode): another one means the log was rotated.
    file: Option<(u64, u64)>,
    /// The start of a line not finished yet.
    unfinished: Vec<u8>,
}

impl LogFollower {
    /// What `log` gained since the last call: whole lines only when `whole_lines` (a line
    /// being written waits for the next call, so it is never split or garbled), else all.
    pub fn read_new(&mut self, log: &Path, whole_lines: bool) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let identity = |metadata: &std::fs::Metadata| (metadata.dev(), metadata.ino());
        if let Ok(mut file) = std::fs::File::open(log)
            && let Ok(metadata) = file.metadata()
        {
            let rotated = self.file.is_some_and(|seen| seen != identity(&metadata));
            if rotated {
                // The part of the older file not read yet comes first.
                if let Ok(mut older) = std::fs::File::open(older_log(log))
                    && older
                        .metadata()
                        .is_ok_and(|m| Some(identity(&m)) == self.file)
                {
                    let _ = older.seek(SeekFrom::Start(self.position));
                    let _ = older.read_to_end(&mut self.unfinished);
                }
            }
            if rotated || metadata.len() < self.position {
                self.position = 0;
            }
            self.file = Some(identity(&metadata));
            let _ = file.seek(SeekFrom::Start(self.position));
            let before = self.unfinished.len();
            let _ = file.read_to_end(&mut self.unfinished);
            self.position += (self.unfinished.len() - before) as u64;
        }
        let complete = if whole_lines {
            self.unfinished
                .iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |i| i + 1)
        } else {
            self.unfinished.len()
        };
        self.unfinished.drain(..complete).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn following_a_log_across_a_rotation_misses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut follower = LogFollower::default();
        copy_to_log(&b"one\ntwo\npar"[..], &log).unwrap();
        assert_eq!(follower.read_new(&log, true), b"one\ntwo\n");
        // Enough more to rotate the log once before the follower looks again.
        let more: String = std::iter::once("tial\n".to_string())
            .chain((0..100_000).map(|n| format!("line {n}\n")))
            .collect();
        copy_to_log(more.as_bytes(), &log).unwrap();
        assert!(dir.path().join("log.1").exists(), "rotated");
        let followed = follower.read_new(&log, true);
        assert_eq!(String::from_utf8(followed).unwrap(), format!("par{more}"));
        assert!(follower.read_new(&log, true).is_empty());
    }

    #[test]
    fn logs_are_capped_and_nothing_is_lost_at_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let lines: String = (0..150_000).map(|n| format!("line {n}\n")).collect();
        assert!(lines.len() as u64 > LOG_CAP_BYTES);
        copy_to_log(lines.as_bytes(), &log).unwrap();
        let newer = std::fs::read_to_string(&log).unwrap();
        let older = std::fs::read_to_string(dir.path().join("log.1")).unwrap();
        assert!(older.len() as u64 <= LOG_CAP_BYTES && newer.len() as u64 <= LOG_CAP_BYTES);
        assert!(
            lines.ends_with(&format!("{older}{newer}")),
            "the newest output, whole"
        );
        assert_eq!(log_tail(&log, 2), "line 149998\nline 149999");
    }
}
