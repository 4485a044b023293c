//! Store-and-forward uplink to the hospital broker: a durable, encrypted
//! outbox and a `rumqttc` bridge that removes a message only once the upstream
//! broker has acknowledged it.
