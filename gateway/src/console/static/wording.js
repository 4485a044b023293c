// Every sentence the ward console shows about a state, an alert or a
// refusal lives in this one table, written for ward staff: what happened,
// why it matters for patients' devices, and what to do next.
// Each entry is {title, what, why, next}.

export const BIOMED = "the biomedical engineering on-call";
export const IT_SECURITY = "hospital IT security";

export const DEVICE_STATE = {
  active: {
    title: "Active",
    what: "The device is enrolled and may send its readings.",
    why: "Its readings reach the patient record and the central station.",
    next: "Nothing to do.",
  },
  quarantined: {
    title: "Quarantined",
    what: "The device is confined: it stays connected but its readings no longer leave the ward.",
    why: "Staff must not rely on this device's readings on the central station while it is quarantined.",
    next: `Check the device at the bedside and ask ${BIOMED}. When it is safe, an operator presses "Release".`,
  },
  revoked: {
    title: "Revoked",
    what: "The device's identity is withdrawn for good; the gateway refuses it.",
    why: "It can no longer send readings or receive updates. Revocation cannot be undone.",
    next: `Replace the device; ${BIOMED} enrols the replacement under a new identity.`,
  },
};

export const CONNECTION = {
  connected: {
    title: "Connected",
    what: "The device has a live, encrypted session with the gateway.",
    why: "Its readings arrive as they are taken.",
    next: "Nothing to do.",
  },
  duplicate: {
    title: "Connected twice",
    what: "Two sessions use this device's identity at the same time.",
    why: "Only one device should hold this identity; the other may be a copy or an attacker.",
    next: `Quarantine the device and call ${IT_SECURITY}.`,
  },
  offline: {
    title: "Not connected",
    what: "The device has no session with the gateway.",
    why: "Its readings do not reach the patient record until it reconnects.",
    next: `Check that it is switched on and within Wi-Fi range; if it stays offline, call ${BIOMED}.`,
  },
};

export const UPLINK = {
  connected: {
    title: "Hospital link up",
    what: "Readings are being delivered to the hospital systems.",
    why: "The central station and the patient record are current.",
    next: "Nothing to do.",
  },
  disconnected: {
    title: "Hospital link down",
    what: "The gateway cannot reach the hospital's message broker; readings wait safely in the gateway's outbox.",
    why: "The central station and patient record fall behind until the link returns; nothing is lost while the outbox has room.",
    next: `Call ${IT_SECURITY} or the network team and give them the error shown. Watch the outbox age.`,
  },
  off: {
    title: "No hospital link configured",
    what: "This gateway does not forward readings to the hospital.",
    why: "Readings are only shown here on the ward.",
    next: "If readings should reach the hospital, ask an administrator to configure the uplink.",
  },
  unavailable: {
    title: "Uplink status unavailable",
    what: "The gateway did not report its uplink status.",
    why: "You cannot tell whether readings reach the hospital.",
    next: "Reload the page; if it persists, call the gateway's administrator.",
  },
};

export const AUDIT_CHAIN = {
  intact: {
    title: "Audit trail intact",
    what: "Every entry of the audit trail is linked to the one before and none was changed.",
    why: "What the trail says happened to the ward's devices can be trusted.",
    next: "Nothing to do.",
  },
  broken: {
    title: "Audit trail damaged",
    what: "Entries of the audit trail were changed, removed or reordered.",
    why: "Someone may be hiding what happened to the ward's devices.",
    next: `Do not change anything on the gateway; call ${IT_SECURITY} at once.`,
  },
};

// Refusals of the admin API, by its error code.
export const REFUSAL = {
  unauthenticated: {
    title: "Token not accepted",
    what: "The gateway did not accept this access token.",
    why: "Without a valid token the console cannot show or change anything.",
    next: "Paste the whole token again; if it was revoked or has expired, ask the gateway's administrator for a new one.",
  },
  forbidden: {
    title: "Not allowed for your role",
    what: "Your token's role may not do this.",
    why: "Each role may do only what its job needs, so a lost token cannot harm the ward's devices.",
    next: "Ask an operator or the gateway's administrator.",
  },
  totp_required: {
    title: "Authenticator code needed",
    what: "This action needs the 6-digit code from your authenticator app.",
    why: "The second factor keeps a stolen token from changing devices.",
    next: "Enter the current code and confirm again.",
  },
  totp_invalid: {
    title: "Authenticator code wrong",
    what: "The 6-digit code did not match.",
    why: "Repeated wrong codes lock changes with this token for a while.",
    next: "Check the code in your authenticator app (and that your phone's clock is right) and try again.",
  },
  totp_reused: {
    title: "Code already used",
    what: "That authenticator code was already used once.",
    why: "Each code works only once so that it cannot be replayed.",
    next: "Wait for the next code in your app and try again.",
  },
  totp_locked: {
    title: "Changes locked",
    what: "Too many wrong authenticator codes: changes with this token are locked for a while.",
    why: "This protects the ward's devices from someone guessing codes.",
    next: "Wait a few minutes (the gateway says how long below), or ask the gateway's administrator.",
  },
  conflict: {
    title: "Not possible in the device's state",
    what: "The gateway refused the change because of the device's current state (a revoked device, for example, stays revoked).",
    why: "Revocation is final so that a withdrawn identity can never come back.",
    next: `Ask ${BIOMED} to enrol a replacement if the device is needed.`,
  },
  not_found: {
    title: "Not found",
    what: "The gateway does not know this device or record.",
    why: "It may have been removed or never enrolled.",
    next: "Reload the page; if the device should be there, call the gateway's administrator.",
  },
  invalid_request: {
    title: "Request refused",
    what: "The gateway refused the request as malformed.",
    why: "Nothing was changed.",
    next: "Check what you typed (the reason is at most 200 characters) and try again.",
  },
  internal: {
    title: "Gateway fault",
    what: "The gateway could not complete the request.",
    why: "Nothing may have changed; the device keeps its previous state.",
    next: "Try again in a minute; if it persists, call the gateway's administrator.",
  },
  timeout: {
    title: "Gateway busy",
    what: "The gateway took too long to answer.",
    why: "The change may not have been made.",
    next: "Wait a moment, reload, and check the device's state before trying again.",
  },
  network: {
    title: "Gateway unreachable",
    what: "The console could not reach the gateway.",
    why: "What you see may be out of date.",
    next: "Check the network connection of this computer; the console retries by itself.",
  },
};

// What each action does, shown before it is confirmed.
export const ACTION = {
  quarantine: {
    title: "Quarantine",
    what: "Confine the device: it stays connected, but its readings stop leaving the ward.",
    why: "Use it when a device behaves strangely or an alert says so; staff must not rely on its readings while it is quarantined.",
    next: `Tell the nurse in charge and ${BIOMED}. Release it once it has been checked.`,
  },
  reactivate: {
    title: "Release",
    what: "Return the device to normal: its readings reach the hospital again.",
    why: "Only release a device that has been checked and is safe to rely on.",
    next: "Watch its readings for a few minutes after release.",
  },
  revoke: {
    title: "Revoke",
    what: "Withdraw the device's identity for good and disconnect it.",
    why: "Use it for a lost, stolen or compromised device. This cannot be undone.",
    next: `The device must be replaced and enrolled anew by ${BIOMED}.`,
  },
};

export const DONE = {
  quarantine: "is now quarantined. Its readings no longer leave the ward.",
  reactivate: "is released and active again.",
  revoke: "is revoked and disconnected. This is final.",
  unchanged: "was already in that state; nothing changed.",
};

// Anomaly alerts, by kind. These are security and data-integrity events
// about devices, never clinical alarms about patients.
export const ALERT = {
  message_flood: {
    title: "Device sending far too many messages",
    what: "The device sends messages much faster than it normally does.",
    why: "A faulty or hijacked device can drown out other devices' readings.",
    next: `Quarantine it if the gateway has not, and call ${BIOMED}.`,
  },
  payload_size: {
    title: "Unusually large messages",
    what: "The device sends much larger messages than it normally does.",
    why: "This can be a fault or someone misusing the device to move data.",
    next: `Call ${IT_SECURITY}; quarantine the device if they ask.`,
  },
  connection_churn: {
    title: "Device reconnecting again and again",
    what: "The device keeps dropping and reopening its connection.",
    why: "Readings may be lost in the gaps; it may be faulty or out of Wi-Fi range.",
    next: `Check its position and battery; if it persists, call ${BIOMED}.`,
  },
  policy_violation: {
    title: "Device broke the rules",
    what: "The device tried something it is not allowed to (another device's channel, malformed or replayed data).",
    why: "A device that breaks the rules may be compromised and its readings cannot be trusted.",
    next: `Quarantine the device if the gateway has not, and call ${IT_SECURITY}.`,
  },
  auth_failure: {
    title: "Repeated refused logins",
    what: "Something on the device network keeps trying to connect without valid credentials.",
    why: "This may be someone trying to get into the ward's device network.",
    next: `Call ${IT_SECURITY} and give them the address shown in the evidence.`,
  },
  duplicate_session: {
    title: "Same device connected twice",
    what: "One device identity was used from two places at once.",
    why: "One of them is a copy or an attacker; readings under this name cannot be trusted.",
    next: `Quarantine the device and call ${IT_SECURITY}.`,
  },
  silent_session: {
    title: "Device connected but silent",
    what: "The device holds a connection but sends no readings.",
    why: "Staff may believe it is monitoring when it is not.",
    next: "Check the device at the bedside now.",
  },
  implausible_change: {
    title: "Impossible change in readings",
    what: "A reading changed faster than a human body can.",
    why: "The device may be faulty or its data tampered with; do not rely on it.",
    next: `Check the patient with another device and call ${BIOMED}.`,
  },
  flat_signal: {
    title: "Readings frozen",
    what: "All the device's readings stayed exactly the same for a long time.",
    why: "A frozen signal can hide a real change in the patient.",
    next: `Check the patient with another device and call ${BIOMED}.`,
  },
  events_dropped: {
    title: "Gateway could not check everything",
    what: "The gateway's watchdog was overloaded and skipped some events.",
    why: "An attack or fault could have gone unnoticed in that time.",
    next: "Call the gateway's administrator.",
  },
  update_metadata_refused: {
    title: "Firmware updates stopped: update information refused",
    what: "The gateway refused the signed update information from the hospital's update server (the reason is in the evidence: expired, rolled back, bad signature or tampered).",
    why: "Expired or altered update information can be an attempt to hold devices on old, vulnerable firmware or to slip in firmware nobody signed; until it verifies again no update step starts, and devices keep running their current firmware safely.",
    next: `Call ${IT_SECURITY} and the update server's administrator; nothing needs to be done at the bedside.`,
  },
  unknown: {
    title: "Alert",
    what: "The gateway raised an alert about this device.",
    why: "Its behaviour differs from what is expected.",
    next: `Call ${BIOMED} with the evidence shown.`,
  },
};

export const ACKNOWLEDGE = {
  title: "Acknowledge",
  what: "Mark the alert as seen; it leaves the list of open alerts (it stays in the audit trail).",
  why: "Acknowledging does not release a quarantined device: check the device first.",
  next: "If the device is quarantined and has been checked, press Release on its row.",
};

export const ALERT_QUARANTINED =
  "The gateway quarantined this device automatically. An operator releases it after it has been checked.";

// Update (OTA) states of a device in a campaign.
export const UPDATE = {
  pending: { title: "Waiting", next: "Nothing to do; it is offered the update when its turn comes and it is idle." },
  offered: { title: "Offered", next: "Nothing to do." },
  downloading: { title: "Downloading", next: "Nothing to do; the device keeps working while it downloads." },
  installed: { title: "Installed, checking", next: "Nothing to do; the device is checking itself." },
  healthy: { title: "Updated", next: "Nothing to do." },
  failed: { title: "Update failed", next: `The device still runs its old software. Call ${BIOMED}; an operator may retry.` },
  rolled_back: { title: "Rolled back", next: `The new software failed its self-test and the device went back to its old software, which is safe. Call ${BIOMED}.` },
  deferred: { title: "Deferred (therapy running)", next: "Nothing to do: the update waits until therapy ends; it is never interrupted." },
};

export const PANEL_OFF = {
  ota: {
    title: "No OTA agent configured",
    what: "This gateway does not roll out software updates.",
    why: "Devices keep their current software until updates are set up.",
    next: "Ask the gateway's administrator if updates should run here.",
  },
  alerts: {
    title: "No alerts API",
    what: "This gateway does not run anomaly detection, so it raises no alerts.",
    why: "Misbehaving devices are still refused by the gateway's rules, but nobody is alerted.",
    next: "Ask the gateway's administrator to turn on anomaly detection.",
  },
  access: {
    title: "Access review: administrators only",
    what: "The list of access tokens is shown to administrators.",
    why: "Who can reach the ward's devices is itself sensitive.",
    next: "Nothing to do.",
  },
};

export const REVIEW_FLAG = {
  stale: "Not used for a long time: revoke it if nobody needs it.",
  expired: "Expired but not revoked: revoke it.",
  revoked: "Revoked: it no longer works.",
  break_glass: "Emergency (break-glass) token: every use is logged; revoke it once the emergency is over.",
};

// Words for device kinds, from the vital signs a device reports.
export const VITAL = {
  heart_rate: { label: "Heart rate", unit: "/min" },
  spo2: { label: "SpO₂", unit: "%" },
  respiratory_rate: { label: "Resp. rate", unit: "/min" },
  temperature: { label: "Temperature", unit: "°C" },
  systolic_bp: { label: "Systolic BP", unit: "mmHg" },
  diastolic_bp: { label: "Diastolic BP", unit: "mmHg" },
  infusion_rate: { label: "Infusion rate", unit: "mL/h" },
};

export function deviceKind(vitals) {
  if (vitals.includes("infusion_rate")) return "Infusion pump";
  if (vitals.includes("systolic_bp")) return "Patient monitor (with blood pressure)";
  if (vitals.includes("heart_rate") || vitals.includes("spo2")) return "Patient monitor";
  return null;
}

export function refusal(code) {
  return REFUSAL[code] || REFUSAL.internal;
}
