namespace ProxySelection.Interception.Nfqueue;

/// <summary>How an <see cref="NfqueueClient"/> binds and configures its queue.</summary>
public sealed class NfqueueOptions
{
    /// <summary>The queue number (iptables <c>--queue-num</c>).</summary>
    public ushort QueueNumber { get; init; }

    /// <summary>What the kernel copies: <see cref="NfqueueCopyMode.Packet"/> by default.</summary>
    public NfqueueCopyMode CopyMode { get; init; } = NfqueueCopyMode.Packet;

    /// <summary>Bytes of each packet copied (1..65535). A SYN with options is at most 120 bytes; the default copies all.</summary>
    public uint CopyRange { get; init; } = 0xFFFF;

    /// <summary>Packets the kernel holds for us before it drops (or, with <see cref="FailOpen"/>, accepts) new ones.</summary>
    public uint MaxQueueLength { get; init; } = 1024;

    /// <summary>NFQA_CFG_F_FAIL_OPEN: accept instead of drop when the queue is full. On by default (safe fallback).</summary>
    public bool FailOpen { get; init; } = true;

    /// <summary>NFQA_CFG_F_GSO: deliver GSO packets unsegmented; their checksum may be partial (see SkbInfo).</summary>
    public bool Gso { get; init; }

    /// <summary>NFQA_CFG_F_CONNTRACK: attach NFQA_CT / NFQA_CT_INFO. Kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT
    /// (such as the 6.18 build measured here) refuse it with EOPNOTSUPP at <see cref="NfqueueClient.Open"/>.</summary>
    public bool Conntrack { get; init; }

    /// <summary>Datagrams taken per recvmmsg call.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Socket receive buffer (SO_RCVBUFFORCE); too small and the kernel reports ENOBUFS (counted).</summary>
    public int ReceiveBufferBytes { get; init; } = 4 << 20;

    /// <summary>
    /// Nice value (-20..19) for the thread that calls <see cref="NfqueueClient.Receive"/>, set on its first call; null
    /// leaves it. Every queued SYN waits for that thread to be scheduled: on a loaded machine its wakeup latency, not the
    /// decision (well under 1 µs), sets the p99 a connection pays.
    /// </summary>
    public int? ReceiveThreadNice { get; init; }

    /// <summary>How long <see cref="NfqueueClient.Open"/> waits for the kernel to acknowledge the configuration.</summary>
    public TimeSpan ConfigTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for values the kernel would refuse or that make no sense.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfZero(CopyRange, nameof(CopyRange));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(CopyRange, 0xFFFFu, nameof(CopyRange));
        ArgumentOutOfRangeException.ThrowIfZero(MaxQueueLength, nameof(MaxQueueLength));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(BatchSize, 1024, nameof(BatchSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(ReceiveBufferBytes, 64 * 1024, nameof(ReceiveBufferBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConfigTimeout, TimeSpan.Zero, nameof(ConfigTimeout));
        if (ReceiveThreadNice is int nice)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(nice, -20, nameof(ReceiveThreadNice));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(nice, 19, nameof(ReceiveThreadNice));
        }
    }
}
