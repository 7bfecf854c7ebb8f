namespace ProxySelection.Engine.Flows;

/// <summary>
/// When to give memory back after a flood: once at least <see cref="MinPackets"/> queued packets came since the last
/// trim, and then <see cref="Quiet"/> passed with fewer than <see cref="QuietPacketsPerSecond"/> a second and no SYN held.
/// The GC collects only when the process allocates, so an idle daemon kept the heap a flood grew (issue 12:
/// 70 → 105 MB, still 104 MB 30 s after). Not more often than <see cref="MinInterval"/>: a full compacting collection
/// pauses every thread.
/// </summary>
internal sealed class IdleTrim(TimeProvider time)
{
    /// <summary>Packets since the last trim that make one worth it: a flood of a few seconds (CI's 6 s at 2,000/s is 12,000).
    /// Ordinary traffic reaches it too, and then costs one collection in a lull, at most once a minute.</summary>
    public const long MinPackets = 5_000;

    public const int QuietPacketsPerSecond = 50;

    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(60);

    private long _packetsAtTrim;
    private long _lastTrim = long.MinValue;
    private long _quietSince = -1;
    private long _packetsAtQuietStart;

    /// <summary>
    /// Called with the packets seen so far (a running count) and the SYNs held now; true when the trim is due (and it is
    /// then counted as done).
    /// </summary>
    public bool Due(long packets, int held)
    {
        long now = time.GetTimestamp();
        if (packets - _packetsAtTrim < MinPackets)
        {
            return false;
        }

        if (_quietSince < 0 || held > 0)
        {
            Restart(now, packets);
            return false;
        }

        var quietFor = time.GetElapsedTime(_quietSince, now);
        if (packets - _packetsAtQuietStart > QuietPacketsPerSecond * Math.Max(1, quietFor.TotalSeconds))
        {
            Restart(now, packets);
            return false;
        }

        if (quietFor < Quiet || (_lastTrim != long.MinValue && time.GetElapsedTime(_lastTrim, now) < MinInterval))
        {
            return false;
        }

        _packetsAtTrim = packets;
        _lastTrim = now;
        _quietSince = -1;
        return true;
    }

    private void Restart(long now, long packets)
    {
        _quietSince = now;
        _packetsAtQuietStart = packets;
    }
}
