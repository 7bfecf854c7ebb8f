using System.Buffers.Binary;

namespace ProxySelection.Relay;

/// <summary>
/// The connection-level MPTCP state the kernel reports through getsockopt(SOL_MPTCP, MPTCP_INFO): struct mptcp_info
/// of include/uapi/linux/mptcp.h. Fields after <see cref="RcvNxt"/> arrived in later kernels (5.12, 5.14, 6.5,
/// 6.8, 6.10) and read as zero when the kernel returned a shorter struct; <see cref="Length"/> says how much it wrote.
/// </summary>
public readonly struct MptcpInfo
{
    /// <summary>
    /// Size of struct mptcp_info from Linux 6.10 on (the last field is mptcpi_last_ack_recv at 92). Measured on 6.18:
    /// getsockopt returns 96 bytes and byte 81 (reserved here, mptcpi_endp_add_addr_max in net-next) stays zero
    /// with two signal endpoints configured.
    /// </summary>
    public const int Size = 96;

    /// <summary>Shortest struct the kernel ever returned (Linux 5.9: up to mptcpi_rcv_nxt).</summary>
    public const int MinimumSize = 40;

    /// <summary>MPTCP_INFO_FLAG_FALLBACK: the connection fell back to plain TCP.</summary>
    public const uint FlagFallback = 1;

    /// <summary>MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED: the peer's key arrived, so MP_JOINs can be authenticated.</summary>
    public const uint FlagRemoteKeyReceived = 2;

    /// <summary>Subflows beyond the initial one (mptcpi_subflows).</summary>
    public byte AdditionalSubflows { get; init; }
    public byte AddAddrSignal { get; init; }
    public byte AddAddrAccepted { get; init; }
    public byte SubflowsMax { get; init; }
    public byte AddAddrSignalMax { get; init; }
    public byte AddAddrAcceptedMax { get; init; }
    public uint Flags { get; init; }

    /// <summary>The local token (RFC 8684 §3.2: the truncated SHA-256 of this side's key) that MP_JOINs name.</summary>
    public uint Token { get; init; }
    public ulong WriteSeq { get; init; }
    public ulong SndUna { get; init; }
    public ulong RcvNxt { get; init; }
    public byte LocalAddrUsed { get; init; }
    public byte LocalAddrMax { get; init; }
    public bool ChecksumEnabled { get; init; }
    public uint Retransmits { get; init; }
    public ulong BytesRetransmitted { get; init; }
    public ulong BytesSent { get; init; }
    public ulong BytesReceived { get; init; }
    public ulong BytesAcked { get; init; }

    /// <summary>All subflows including the initial one (mptcpi_subflows_total, Linux 6.8+; 0 on older kernels).</summary>
    public byte SubflowsTotal { get; init; }
    public uint LastDataSentMs { get; init; }
    public uint LastDataReceivedMs { get; init; }
    public uint LastAckReceivedMs { get; init; }

    /// <summary>How many bytes of the struct the kernel filled in.</summary>
    public int Length { get; init; }

    public bool FellBack => (Flags & FlagFallback) != 0;
    public bool RemoteKeyReceived => (Flags & FlagRemoteKeyReceived) != 0;

    /// <summary>
    /// Subflow count including the initial one: mptcpi_subflows_total where the kernel has it, else the additional
    /// subflows plus one.
    /// </summary>
    public int Subflows => Length > 80 ? SubflowsTotal : AdditionalSubflows + 1;

    /// <summary>Parses the bytes getsockopt wrote (native byte order: the struct is not a wire format).</summary>
    /// <returns>false when the kernel wrote less than the 5.9 struct.</returns>
    public static bool TryParse(ReadOnlySpan<byte> data, out MptcpInfo info)
    {
        if (data.Length < MinimumSize)
        {
            info = default;
            return false;
        }
        Span<byte> full = stackalloc byte[Size];
        full.Clear();
        data[..Math.Min(data.Length, Size)].CopyTo(full);
        info = new MptcpInfo
        {
            AdditionalSubflows = full[0],
            AddAddrSignal = full[1],
            AddAddrAccepted = full[2],
            SubflowsMax = full[3],
            AddAddrSignalMax = full[4],
            AddAddrAcceptedMax = full[5],
            Flags = BinaryPrimitives.ReadUInt32LittleEndian(full[8..]),
            Token = BinaryPrimitives.ReadUInt32LittleEndian(full[12..]),
            WriteSeq = BinaryPrimitives.ReadUInt64LittleEndian(full[16..]),
            SndUna = BinaryPrimitives.ReadUInt64LittleEndian(full[24..]),
            RcvNxt = BinaryPrimitives.ReadUInt64LittleEndian(full[32..]),
            LocalAddrUsed = full[40],
            LocalAddrMax = full[41],
            ChecksumEnabled = full[42] != 0,
            Retransmits = BinaryPrimitives.ReadUInt32LittleEndian(full[44..]),
            BytesRetransmitted = BinaryPrimitives.ReadUInt64LittleEndian(full[48..]),
            BytesSent = BinaryPrimitives.ReadUInt64LittleEndian(full[56..]),
            BytesReceived = BinaryPrimitives.ReadUInt64LittleEndian(full[64..]),
            BytesAcked = BinaryPrimitives.ReadUInt64LittleEndian(full[72..]),
            SubflowsTotal = full[80],
            LastDataSentMs = BinaryPrimitives.ReadUInt32LittleEndian(full[84..]),
            LastDataReceivedMs = BinaryPrimitives.ReadUInt32LittleEndian(full[88..]),
            LastAckReceivedMs = BinaryPrimitives.ReadUInt32LittleEndian(full[92..]),
            Length = Math.Min(data.Length, Size),
        };
        return true;
    }

    public override string ToString() =>
        $"subflows={Subflows} token={Token:x8} flags={Flags:x} sent={BytesSent} received={BytesReceived} retrans={BytesRetransmitted}";
}
