"""AFE (analog front end) drivers: register access only. Pack logic reaches the chip through them."""
