//! Containers: `strata run` and the verbs around it. One file per step of a container's life:
//!
//! - [`record`]: `ROOT/containers/<id>/container.json`, found by name or id prefix ([`record::find`]);
//! - [`config`]: the process configuration from the image config and the `run` flags;
//! - [`mounts`]: binds, volumes and tmpfs of a container (`-v`, `--mount`, `--tmpfs`,
//!   `--volumes-from`, the image's `Volumes`);
//! - [`volumes`]: the store's named and anonymous volumes; [`prefill`]: a new volume filled
//!   from the image;
//! - [`create`]: id, name, directory, record;
//! - [`start`]: the client side of starting (stdio, forking the monitor, id mapping);
//! - [`monitor`]: the per-container process owning the rootfs mount and waiting for PID 1;
//! - [`init`]: PID 1 up to `execve` (or, with `--init`, the [`reaper`] the command runs under); [`namespaces`], [`rootfs`] and [`process`] are its steps,
//!   written against the [`syscall::Syscall`] trait so they are tested without privileges;
//! - [`report`]: the messages between those processes;
//! - [`tty`], [`signals`], [`logs`]: terminals, signal forwarding, the detached log;
//! - [`state`]: whether a container still runs, and correcting records that say otherwise;
//! - [`network`]: the network mode, `/etc/hosts` and `/etc/resolv.conf`, the pasta/slirp4netns helper;
//!   [`ports`]: published ports;
//! - [`commit`]: a container's changes as a new image;
//! - [`exec`], [`stop`], [`remove`]: the other verbs.
//!
//! All raw system calls are in [`crate::sys`] (`ns`, `mountfd`, `pty`, `fdpass`, `creds`).

pub mod commit;
pub mod config;
pub mod create;
pub mod exec;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod ports;
pub mod prefill;
pub mod process;
pub mod reaper;
pub mod record;
pub mod remove;
pub mod report;
pub mod rootfs;
pub mod signals;
pub mod start;
pub mod state;
pub mod stop;
pub mod syscall;
pub mod tty;
pub mod volumes;
