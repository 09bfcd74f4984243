"""Device emulation: profiles, fleets, throttled clocks and energy."""
