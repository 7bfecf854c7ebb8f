using System.Net;
using Microsoft.Extensions.Logging;

namespace ProxySelection.Engine.Fronts;

/// <summary>
/// The SOCKS front's lines: new kinds (<c>socks ...</c>, <c>socks-relay ...</c>), so the readers of <c>syn</c> and
/// <c>relay</c> lines are unaffected. Event ids 200..249.
/// </summary>
internal static partial class SocksLog
{
    // {Front} is "socks" or "convert" (RFC 8803).
    [LoggerMessage(200, LogLevel.Information, "{Front} listening {EndPoint} transport={Transport} auth={Auth}")]
    public static partial void Listening(ILogger logger, string front, EndPoint? endPoint, string transport, string auth);

    [LoggerMessage(201, LogLevel.Information, "{Front} {Client}: closed in the handshake ({Reason})")]
    public static partial void HandshakeFailed(ILogger logger, string front, IPEndPoint? client, string reason);

    [LoggerMessage(202, LogLevel.Information, "{Front} {Client} -> {Target}: {Reply} ({Detail})")]
    public static partial void Connect(ILogger logger, string front, IPEndPoint? client, string target, SocksReply reply, string detail);

    [LoggerMessage(203, LogLevel.Information,
        "{Front}-relay {Client} -> {Destination}: {Reason} up={Up} down={Down} subflows={Subflows} client={ClientMptcp} upstream={UpstreamMptcp} in {DurationMilliseconds:F0} ms")]
    public static partial void Relayed(ILogger logger, string front, IPEndPoint? client, IPEndPoint? destination, Relay.CloseReason reason, long up, long down, int subflows,
        Relay.MptcpStatus clientMptcp, Relay.MptcpStatus upstreamMptcp, double durationMilliseconds);

    [LoggerMessage(204, LogLevel.Information, "{Front} {Client}: refused ({Reason})")]
    public static partial void Refused(ILogger logger, string front, IPEndPoint? client, string reason);

    [LoggerMessage(205, LogLevel.Warning, "{Front} accept failed: {Error}")]
    public static partial void AcceptFailed(ILogger logger, string front, System.Net.Sockets.SocketError error);

    [LoggerMessage(206, LogLevel.Warning, "host-configured front: MPTCP unavailable ({Error}); listening with TCP")]
    public static partial void NoMptcp(ILogger logger, System.Net.Sockets.SocketError error);

    [LoggerMessage(208, LogLevel.Warning, "{Front} listens on {EndPoint} with no authentication: anyone who reaches it may use this proxy; bind a specific address or set Proxy:SocksUsersFile")]
    public static partial void OpenToAll(ILogger logger, string front, EndPoint? endPoint);

    // Under a flood the per-client lines (refused, handshake failed, accept failed) are bounded (LogBudget); the counters count all.
    [LoggerMessage(209, LogLevel.Warning, "host-configured fronts: {Skipped} per-client lines left out (more than {PerSecond} a second)")]
    public static partial void LinesLeftOut(ILogger logger, long skipped, int perSecond);

    [LoggerMessage(207, LogLevel.Warning, "convert: TCP_FASTOPEN refused ({Error}); the Convert message then costs a round trip")]
    public static partial void NoFastOpen(ILogger logger, System.Net.Sockets.SocketError error);
}
