"""Communications: frame codec, Wi-Fi/MQTT link, outbox, downlink commands, authentication."""
