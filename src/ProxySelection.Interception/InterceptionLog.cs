using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Netlink;

namespace ProxySelection.Interception;

/// <summary>
/// Every log line of the interception layer. Event ids 1000-1099 belong to this class. Packet-path events fire only
/// when something is wrong (a fault, a drop, a refusal); a packet that is handled normally logs nothing.
/// </summary>
internal static partial class InterceptionLog
{
    [LoggerMessage(1000, LogLevel.Information,
        "NFQUEUE {Queue} bound: copy range {CopyRange}, max queue length {MaxQueueLength}, fail-open {FailOpen}, receive buffer {ReceiveBufferBytes} bytes")]
    public static partial void QueueBound(ILogger logger, ushort queue, uint copyRange, uint maxQueueLength, bool failOpen, int receiveBufferBytes);

    [LoggerMessage(1001, LogLevel.Warning,
        "NFQUEUE {Queue}: receive buffer overrun (ENOBUFS), the kernel dropped queued packet messages; {Total} overruns so far (raise ReceiveBufferBytes)")]
    public static partial void ReceiveOverrun(ILogger logger, ushort queue, long total);

    [LoggerMessage(1002, LogLevel.Warning,
        "NFQUEUE {Queue}: malformed netlink message of type 0x{MessageType:x4} ({Status}) skipped; a packet message's packet is accepted when its id is readable")]
    public static partial void MalformedMessage(ILogger logger, ushort queue, ushort messageType, NetlinkStatus status);

    [LoggerMessage(1008, LogLevel.Warning, "NFQUEUE {Queue}: malformed netlink datagram ({Status}); the rest of it was skipped")]
    public static partial void MalformedDatagram(ILogger logger, ushort queue, NetlinkStatus status);

    [LoggerMessage(1003, LogLevel.Error, "NFQUEUE {Queue}: handler failed on packet {PacketId}; the packet was accepted (fail open)")]
    public static partial void HandlerFault(ILogger logger, ushort queue, uint packetId, Exception exception);

    [LoggerMessage(1004, LogLevel.Warning, "NFQUEUE {Queue}: the kernel refused a request with errno {Errno}")]
    public static partial void NetlinkError(ILogger logger, ushort queue, int errno);

    [LoggerMessage(1005, LogLevel.Error, "NFQUEUE {Queue}: cannot accept packet {PacketId}; relying on fail-open and --queue-bypass")]
    public static partial void FailOpenAcceptFailed(ILogger logger, ushort queue, uint packetId, Exception exception);

    [LoggerMessage(1006, LogLevel.Warning, "NFQUEUE {Queue}: accepting the packets still held at close failed; the kernel drops them")]
    public static partial void ReleaseOnCloseFailed(ILogger logger, ushort queue, Exception exception);

    [LoggerMessage(1007, LogLevel.Debug, "NFQUEUE {Queue}: packet {PacketId} arrived before the configuration was acknowledged and was accepted")]
    public static partial void AcceptedDuringSetup(ILogger logger, ushort queue, uint packetId);

    [LoggerMessage(1010, LogLevel.Information, "interception ruleset {ChainPrefix} applied (queue {Queue}, ports {Ports})")]
    public static partial void RulesetApplied(ILogger logger, string chainPrefix, ushort queue, string ports);

    [LoggerMessage(1011, LogLevel.Error, "interception ruleset {ChainPrefix} could not be applied and was rolled back")]
    public static partial void RulesetApplyFailed(ILogger logger, string chainPrefix, Exception exception);

    [LoggerMessage(1012, LogLevel.Information, "interception ruleset {ChainPrefix} removed")]
    public static partial void RulesetRemoved(ILogger logger, string chainPrefix);

    [LoggerMessage(1013, LogLevel.Warning,
        "interception ruleset {ChainPrefix}: no ipset tool ({Error}); without the handshake set, a SYN flood that drives a listener to SYN cookies resets the connections answered with one (install the ipset package)")]
    public static partial void NoIpset(ILogger logger, string chainPrefix, string error);
}
