using System.Buffers;

namespace ProxySelection.Relay;

/// <summary>Relay settings. Plain class with documented defaults; <see cref="Validate"/> at start.</summary>
public sealed class RelayOptions
{
    /// <summary>Transport of the client leg (the listeners). Downgrade: Mptcp (default). Upgrade: Tcp.</summary>
    public TransportProtocol ClientProtocol { get; set; } = TransportProtocol.Mptcp;

    /// <summary>Transport of the upstream leg. Downgrade: Tcp (default). Upgrade: Mptcp.</summary>
    public TransportProtocol UpstreamProtocol { get; set; } = TransportProtocol.Tcp;

    /// <summary>
    /// Connect upstream from the client's own address (IP_TRANSPARENT bind), so the server sees the client.
    /// Needs policy routing that brings the answers back to this host. Default false.
    /// </summary>
    public bool TransparentSource { get; set; }

    /// <summary>A connection with no byte moving either way for this long is reset both ways. Default 5 min.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Connections relayed at once; one more is refused with a reset. Default 10 000.</summary>
    public int MaxConnections { get; set; } = 10_000;

    /// <summary>
    /// Bytes read from one side and not yet written to the other at which reading stops (pipe pause threshold).
    /// Default 1 MiB per direction. Memory held per direction stays below 2 × (this + <see cref="ReadSize"/>) plus
    /// two segments, however short the reads come back.
    /// </summary>
    public int PauseThreshold { get; set; } = 1024 * 1024;

    /// <summary>Buffered bytes below which reading resumes. Default 512 KiB.</summary>
    public int ResumeThreshold { get; set; } = 512 * 1024;

    /// <summary>
    /// Bytes asked for per read, at least 64 KiB (fewer syscalls on bulk transfers). Default 256 KiB: measured on 2 vCPUs
    /// (TCP → TCP, iperf3) 0.45–0.49 CPU s/GB against 0.59–0.66 with 64 KiB (socat -b 65536: 0.61–0.67), and an MPTCP
    /// client leg at veth speed (Reno sender, one subflow) read at 22–25 Gbit/s with 2–4 of 40 intervals stalled against
    /// 13–16 Gbit/s; short connections unchanged. Idle connections hold no buffer either way.
    /// </summary>
    public int ReadSize { get; set; } = 256 * 1024;

    /// <summary>
    /// Relay each direction with splice(2) through a kernel pipe (socket → pipe → socket, no copy through user space)
    /// instead of reads and writes through a user-space buffer. Default false (see the Bench README for the A/B). The
    /// pipe is opened on a direction's first bytes: two more descriptors per busy direction, none while idle. A direction
    /// whose destination is an MPTCP socket always copies (the kernel's splice/sendfile sender corrupts 2-subflow MPTCP
    /// data, issue 13); the engine's daemon leaves this off.
    /// </summary>
    public bool Splice { get; set; }

    /// <summary>Room asked for in each splice pipe (F_SETPIPE_SZ; the kernel caps it at fs.pipe-max-size). Default 256 KiB.</summary>
    public int SplicePipeSize { get; set; } = 256 * 1024;

    /// <summary>
    /// Pipe segment size: two reads. A read asks for <see cref="ReadSize"/> free bytes, so a new segment is taken only
    /// when the last one holds more than a read's worth of data; with segments of one read, every short read would
    /// pin a whole segment (measured: 10 segments for 256 KiB buffered).
    /// </summary>
    internal int SegmentSize => 2 * ReadSize;

    /// <summary>
    /// Where the pipes rent their segments. Default null: <see cref="MemoryPool{T}.Shared"/>. A segment is rented
    /// only when a zero-byte read wakes the loop, and returned once its bytes are written to the other side (at once
    /// when the wakeup was stale and nothing was readable), so an idle connection holds none.
    /// </summary>
    public MemoryPool<byte>? MemoryPool { get; set; }

    /// <summary>Problems with the values; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (IdleTimeout <= TimeSpan.Zero && IdleTimeout != Timeout.InfiniteTimeSpan)
        {
            errors.Add("IdleTimeout must be positive or infinite");
        }
        if (MaxConnections <= 0)
        {
            errors.Add("MaxConnections must be positive");
        }
        if (ReadSize < 64 * 1024)
        {
            errors.Add("ReadSize must be at least 64 KiB");
        }
        if (PauseThreshold < ReadSize)
        {
            errors.Add("PauseThreshold must be at least ReadSize");
        }
        if (SplicePipeSize is < 4096 or > 64 * 1024 * 1024)
        {
            errors.Add("SplicePipeSize must be between 4 KiB and 64 MiB");
        }
        if (ResumeThreshold <= 0 || ResumeThreshold > PauseThreshold)
        {
            errors.Add("ResumeThreshold must be positive and at most PauseThreshold");
        }
        return errors;
    }

    internal void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("invalid RelayOptions: " + string.Join("; ", errors));
        }
    }
}
