using System.Net;
using Microsoft.Extensions.Logging;

namespace ProxySelection.Host.Socks;

/// <summary>
/// The SOCKS front's lines: new kinds (<c>socks ...</c>, <c>socks-relay ...</c>), so the readers of <c>syn</c> and
/// <c>relay</c> lines are unaffected. Event ids 200..249.
/// </summary>
internal static partial class SocksLog
{
    [LoggerMessage(200, LogLevel.Information, "socks listening {EndPoint} transport={Transport} auth={Auth}")]
    public static partial void Listening(ILogger logger, EndPoint? endPoint, string transport, string auth);

    [LoggerMessage(201, LogLevel.Information, "socks {Client}: closed in the handshake ({Reason})")]
    public static partial void HandshakeFailed(ILogger logger, IPEndPoint? client, string reason);

    [LoggerMessage(202, LogLevel.Information, "socks {Client} -> {Target}: {Reply} ({Detail})")]
    public static partial void Connect(ILogger logger, IPEndPoint? client, string target, SocksReply reply, string detail);

    [LoggerMessage(203, LogLevel.Information,
        "socks-relay {Client} -> {Destination}: {Reason} up={Up} down={Down} subflows={Subflows} client={ClientMptcp} upstream={UpstreamMptcp} in {DurationMilliseconds:F0} ms")]
    public static partial void Relayed(ILogger logger, IPEndPoint? client, IPEndPoint? destination, Relay.CloseReason reason, long up, long down, int subflows,
        Relay.MptcpStatus clientMptcp, Relay.MptcpStatus upstreamMptcp, double durationMilliseconds);

    [LoggerMessage(204, LogLevel.Information, "socks {Client}: refused ({Reason})")]
    public static partial void Refused(ILogger logger, IPEndPoint? client, string reason);

    [LoggerMessage(205, LogLevel.Warning, "socks accept failed: {Error}")]
    public static partial void AcceptFailed(ILogger logger, System.Net.Sockets.SocketError error);

    [LoggerMessage(206, LogLevel.Warning, "socks: MPTCP unavailable ({Error}); listening with TCP")]
    public static partial void NoMptcp(ILogger logger, System.Net.Sockets.SocketError error);
}
