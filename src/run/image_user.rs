//! The user a registry image's config names (`User`: `postgres`, `999`, `app:staff`,
//! `1000:1000`), looked up in the image's own `/etc/passwd` and `/etc/group` as container
//! engines do.

/// Whom a service from an image runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: u32,
    pub gid: u32,
    /// The passwd name, or the number when the image has no entry for it.
    pub name: String,
    /// The passwd home, or `/` without an entry.
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageUserError {
    #[error("the image runs as user `{0}`, which its /etc/passwd does not name")]
    UnknownUser(String),
    #[error("the image runs as group `{0}`, which its /etc/group does not name")]
    UnknownGroup(String),
}

/// `user` (the config's `User`) resolved against the image's `passwd` and `group` texts.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<ImageUser, ImageUserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    // name:password:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| {
            fields.len() >= 6
                && (fields[0] == user_part
                    || (user_part.parse::<u32>().is_ok() && fields[2] == user_part))
        });
    let (uid, primary_gid, name, home) = match (&entry, user_part.parse::<u32>()) {
        (Some(fields), _) => (
            fields[2]
                .parse()
                .map_err(|_| ImageUserError::UnknownUser(user_part.into()))?,
            fields[3].parse().unwrap_or(0),
            fields[0].to_string(),
            fields[5].to_string(),
        ),
        // A number the image has no entry for is still a user, in group 0 (as Docker has it).
        (None, Ok(uid)) => (uid, 0, uid.to_string(), "/".to_string()),
        (None, Err(_)) => return Err(ImageUserError::UnknownUser(user_part.into())),
    };
    let gid = match group_part {
        None => primary_gid,
        Some(group_part) => match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|fields| fields.len() >= 3 && fields[0] == group_part)
                .and_then(|fields| fields[2].parse().ok())
                .ok_or_else(|| ImageUserError::UnknownGroup(group_part.into()))?,
        },
    };
    Ok(ImageUser {
        uid,
        gid,
        name,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\npostgres:x:999:999::/var/lib/postgresql:/bin/bash\n";
    const GROUP: &str = "root:x:0:\npostgres:x:999:\nstaff:x:50:\n";

    #[test]
    fn names_numbers_and_groups_as_engines_read_them() {
        let postgres = resolve("postgres", PASSWD, GROUP).unwrap();
        assert_eq!(
            (postgres.uid, postgres.gid, postgres.home.as_str()),
            (999, 999, "/var/lib/postgresql")
        );
        assert_eq!(resolve("999", PASSWD, GROUP).unwrap().name, "postgres");
        assert_eq!(resolve("postgres:staff", PASSWD, GROUP).unwrap().gid, 50);
        let numeric = resolve("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.name.as_str()),
            (1000, 1000, "1000")
        );
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().gid, 0);
        assert_eq!(
            resolve("app", PASSWD, GROUP).unwrap_err().to_string(),
            "the image runs as user `app`, which its /etc/passwd does not name"
        );
        assert_eq!(
            resolve("postgres:wheel", PASSWD, GROUP).unwrap_err(),
            ImageUserError::UnknownGroup("wheel".into())
        );
    }
}
