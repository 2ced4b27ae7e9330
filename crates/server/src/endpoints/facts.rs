//! What agents report at check-in (authentik's `DeviceFacts`): parsed into types that hold only
//! what the schema allows, bounded in size, and merged per device across connectors.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::FieldErrors;

/// The longest text of any one fact (a path, a version string, a process name).
pub const LONGEST_TEXT: usize = 4096;
/// The most entries of the long lists: installed software and running processes.
pub const MOST_LONG_LIST: usize = 20_000;
/// The most entries of the short lists: disks, interfaces, addresses, users and groups.
pub const MOST_SHORT_LIST: usize = 4_096;
/// The largest vendor object, as JSON.
pub const LARGEST_VENDOR_BYTES: usize = 64 * 1024;

/// The operating system families agents report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OsFamily {
    Linux,
    Unix,
    Bsd,
    Windows,
    MacOs,
    Android,
    IOs,
    Other,
}

/// `{"family": "linux", "name": "Ubuntu", "version": "24.04.3 LTS (Noble Numbat)", "arch": "amd64"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperatingSystem {
    pub family: OsFamily,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// A mounted disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Disk {
    pub name: String,
    pub mountpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_total_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_used_bytes: Option<i64>,
    #[serde(default)]
    pub encryption_enabled: bool,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInterface {
    pub name: String,
    pub hardware_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
}

/// The device's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_enabled: Option<bool>,
    pub interfaces: Vec<NetworkInterface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The device's hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hardware {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    pub serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Software {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The package manager it came from.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A running process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Process {
    pub id: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A local account of the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceUser {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}

/// A local group of the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceGroup {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// authentik's `DeviceFacts`: every part optional; fields this schema does not name are dropped
/// (newer agents may report more).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OperatingSystem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<Disk>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<Vec<Software>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<Process>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<DeviceUser>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<DeviceGroup>>,
    /// What the agent's vendor adds, e.g. `{"io.goauthentik.platform": {"agent_version": "0.23.0"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vendor: Option<Map<String, Value>>,
}

/// Checks text the schema requires (`required`: at least one character) against the bounds.
fn text(errors: &mut FieldErrors, field: &str, value: &str, required: bool) {
    if required && value.is_empty() {
        errors.add(field, "This field may not be blank.");
    } else if value.chars().count() > LONGEST_TEXT {
        errors.add(field, format!("Ensure this field has no more than {LONGEST_TEXT} characters."));
    } else if value.contains('\0') {
        errors.add(field, crate::json::NULL_CHARACTER);
    }
}

fn optional(errors: &mut FieldErrors, field: &str, value: &Option<String>) {
    if let Some(value) = value {
        text(errors, field, value, true);
    }
}

fn list<T>(errors: &mut FieldErrors, field: &str, items: &[T], most: usize, mut each: impl FnMut(&mut FieldErrors, &str, &T)) {
    if items.len() > most {
        errors.add(field, format!("Ensure this list has no more than {most} entries."));
        return;
    }
    for (index, item) in items.iter().enumerate() {
        each(errors, &format!("{field}.{index}"), item);
        // One list of bad entries says enough.
        if errors.fields().len() >= 20 {
            return;
        }
    }
}

fn not_negative(errors: &mut FieldErrors, field: &str, value: Option<i64>) {
    if value.is_some_and(|v| v < 0) {
        errors.add(field, "Ensure this value is greater than or equal to 0.");
    }
}

impl DeviceFacts {
    /// Checks what serde cannot: blank required text, lengths, list sizes and the vendor
    /// object's size. Errors name the field by its path (`software.12.name`).
    pub fn check(&self) -> crate::error::Result<()> {
        let mut errors = FieldErrors::new();
        if let Some(os) = &self.os {
            optional(&mut errors, "os.name", &os.name);
            optional(&mut errors, "os.version", &os.version);
            optional(&mut errors, "os.arch", &os.arch);
        }
        if let Some(disks) = &self.disks {
            list(&mut errors, "disks", disks, MOST_SHORT_LIST, |errors, at, disk| {
                text(errors, &format!("{at}.name"), &disk.name, true);
                text(errors, &format!("{at}.mountpoint"), &disk.mountpoint, true);
                if let Some(label) = &disk.label {
                    text(errors, &format!("{at}.label"), label, false);
                }
                not_negative(errors, &format!("{at}.capacity_total_bytes"), disk.capacity_total_bytes);
                not_negative(errors, &format!("{at}.capacity_used_bytes"), disk.capacity_used_bytes);
            });
        }
        if let Some(network) = &self.network {
            text(&mut errors, "network.hostname", &network.hostname, true);
            optional(&mut errors, "network.gateway", &network.gateway);
            list(&mut errors, "network.interfaces", &network.interfaces, MOST_SHORT_LIST, |errors, at, interface| {
                text(errors, &format!("{at}.name"), &interface.name, true);
                text(errors, &format!("{at}.hardware_address"), &interface.hardware_address, true);
                for (field, values) in [("ip_addresses", &interface.ip_addresses), ("dns_servers", &interface.dns_servers)] {
                    if let Some(values) = values {
                        list(errors, &format!("{at}.{field}"), values, MOST_SHORT_LIST, |errors, at, value| text(errors, at, value, true));
                    }
                }
            });
        }
        if let Some(hardware) = &self.hardware {
            text(&mut errors, "hardware.serial", &hardware.serial, true);
            optional(&mut errors, "hardware.model", &hardware.model);
            optional(&mut errors, "hardware.manufacturer", &hardware.manufacturer);
            optional(&mut errors, "hardware.cpu_name", &hardware.cpu_name);
            not_negative(&mut errors, "hardware.cpu_count", hardware.cpu_count);
            not_negative(&mut errors, "hardware.memory_bytes", hardware.memory_bytes);
        }
        if let Some(software) = &self.software {
            list(&mut errors, "software", software, MOST_LONG_LIST, |errors, at, package| {
                text(errors, &format!("{at}.name"), &package.name, true);
                text(errors, &format!("{at}.source"), &package.source, true);
                if let Some(version) = &package.version {
                    text(errors, &format!("{at}.version"), version, false);
                }
                optional(errors, &format!("{at}.path"), &package.path);
            });
        }
        if let Some(processes) = &self.processes {
            list(&mut errors, "processes", processes, MOST_LONG_LIST, |errors, at, process| {
                text(errors, &format!("{at}.name"), &process.name, true);
                optional(errors, &format!("{at}.user"), &process.user);
            });
        }
        if let Some(users) = &self.users {
            list(&mut errors, "users", users, MOST_SHORT_LIST, |errors, at, user| {
                text(errors, &format!("{at}.id"), &user.id, true);
                optional(errors, &format!("{at}.username"), &user.username);
                optional(errors, &format!("{at}.name"), &user.name);
                optional(errors, &format!("{at}.home"), &user.home);
            });
        }
        if let Some(groups) = &self.groups {
            list(&mut errors, "groups", groups, MOST_SHORT_LIST, |errors, at, group| {
                text(errors, &format!("{at}.id"), &group.id, true);
                optional(errors, &format!("{at}.name"), &group.name);
            });
        }
        if let Some(vendor) = &self.vendor {
            let size = serde_json::to_vec(vendor).map_or(usize::MAX, |bytes| bytes.len());
            if size > LARGEST_VENDOR_BYTES {
                errors.add("vendor", format!("Ensure this object is no larger than {LARGEST_VENDOR_BYTES} bytes as JSON."));
            }
        }
        errors.into_result()
    }
}

/// Merges reports from several sources, oldest first: objects merge key by key, lists keep the
/// entries of each in order without repeating one, anything else the newer report replaces.
pub fn merge(reports: impl IntoIterator<Item = Value>) -> Value {
    let mut merged = Value::Object(Map::new());
    for report in reports {
        merge_into(&mut merged, report);
    }
    merged
}

fn merge_into(base: &mut Value, newer: Value) {
    match (base, newer) {
        (Value::Object(base), Value::Object(newer)) => {
            for (key, value) in newer {
                match base.get_mut(&key) {
                    Some(existing) => merge_into(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(newer)) => {
            // Seen entries by their JSON text: lists of 20,000 packages merge in linear time.
            let mut seen: std::collections::HashSet<String> = base.iter().map(Value::to_string).collect();
            for item in newer {
                if seen.insert(item.to_string()) {
                    base.push(item);
                }
            }
        }
        (base, newer) => *base = newer,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merging_keeps_each_sources_entries_and_newer_values_win() {
        let older = json!({"os": {"family": "linux", "version": "22.04"}, "software": [{"name": "a"}], "vendor": {"x": 1}});
        let newer = json!({"os": {"version": "24.04"}, "software": [{"name": "a"}, {"name": "b"}], "vendor": {"y": 2}});
        assert_eq!(
            merge([older, newer]),
            json!({"os": {"family": "linux", "version": "24.04"}, "software": [{"name": "a"}, {"name": "b"}], "vendor": {"x": 1, "y": 2}})
        );
    }

    #[test]
    fn blank_required_text_and_oversized_lists_are_named_by_path() {
        let facts: DeviceFacts = serde_json::from_value(json!({
            "software": [{"name": "ok", "source": "apt"}, {"name": "", "source": "apt"}],
            "network": {"hostname": "h", "interfaces": [{"name": "eth0", "hardware_address": ""}]},
        }))
        .unwrap();
        let Err(crate::error::Error::Validation(errors)) = facts.check() else { panic!("refused") };
        let fields: Vec<&String> = errors.fields().keys().collect();
        assert_eq!(fields, ["network.interfaces.0.hardware_address", "software.1.name"]);

        let many = DeviceFacts {
            processes: Some(vec![Process { id: 1, name: "p".into(), user: None }; MOST_LONG_LIST + 1]),
            ..Default::default()
        };
        let Err(crate::error::Error::Validation(errors)) = many.check() else { panic!("refused") };
        assert!(errors.fields().contains_key("processes"));
        assert!(DeviceFacts::default().check().is_ok());
    }

    #[test]
    fn unknown_families_are_refused_and_unknown_fields_dropped() {
        assert!(serde_json::from_value::<DeviceFacts>(json!({"os": {"family": "plan9", "arch": "x"}})).is_err());
        let facts: DeviceFacts = serde_json::from_value(json!({"os": {"family": "mac_os", "arch": "arm64"}, "future": 1})).unwrap();
        assert_eq!(serde_json::to_value(&facts).unwrap(), json!({"os": {"family": "mac_os", "arch": "arm64"}}));
    }
}
