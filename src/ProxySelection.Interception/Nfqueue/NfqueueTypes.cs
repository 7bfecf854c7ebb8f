namespace ProxySelection.Interception.Nfqueue;

/// <summary>NFQNL_CFG_CMD_*.</summary>
public enum NfqueueCommand : byte
{
    None = 0,
    Bind = 1,
    Unbind = 2,
    PfBind = 3,
    PfUnbind = 4,
}

/// <summary>NFQNL_COPY_*: what of each packet the kernel copies to us.</summary>
public enum NfqueueCopyMode : byte
{
    None = 0,
    Meta = 1,
    Packet = 2,
}

/// <summary>NFQA_CFG_F_*.</summary>
[Flags]
public enum NfqueueConfigFlags : uint
{
    None = 0,

    /// <summary>Accept instead of drop when the queue is full.</summary>
    FailOpen = 1,

    /// <summary>Attach conntrack information (NFQA_CT, NFQA_CT_INFO).</summary>
    Conntrack = 2,

    /// <summary>Deliver GSO packets whole; their checksum may then be partial (see <see cref="NfqueueSkbInfo"/>).</summary>
    Gso = 4,

    UidGid = 8,
    SecurityContext = 0x10,
}

/// <summary>NFQA_SKB_* bits of NFQA_SKB_INFO.</summary>
[Flags]
public enum NfqueueSkbInfo : uint
{
    None = 0,

    /// <summary>The transport checksum is not filled in yet (only with <see cref="NfqueueConfigFlags.Gso"/>).</summary>
    ChecksumNotReady = 1,

    Gso = 2,
    ChecksumNotVerified = 4,
}

/// <summary>NF_* verdicts.</summary>
public enum NfqueueVerdict : uint
{
    Drop = 0,
    Accept = 1,
    Stolen = 2,
    Queue = 3,
    Repeat = 4,
    Stop = 5,
}

/// <summary>NF_INET_* hooks a packet was queued from.</summary>
public enum NetfilterHook : byte
{
    PreRouting = 0,
    LocalIn = 1,
    Forward = 2,
    LocalOut = 3,
    PostRouting = 4,
}
