using Microsoft.Extensions.Logging;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// <c>proxysel run</c>'s own lines. Their text is an interface (the demo and the tests wait for <c>proxysel: running</c>,
/// <c>proxysel: draining</c>, the counters of <c>proxysel: stopped</c>). Event ids 1..99.
/// </summary>
internal static partial class DaemonLog
{
    [LoggerMessage(1, LogLevel.Information, "proxysel: running role={Role} mode={Mode} policy={Policy} id={ProxyId} ports={Ports} queue={Queue}")]
    public static partial void Running(ILogger logger, Negotiation.ProxyRole role, Negotiation.SignalingMode mode, Negotiation.SelectionPolicy policy, byte proxyId, string ports, ushort queue);

    [LoggerMessage(2, LogLevel.Information, "proxysel: stopping")]
    public static partial void Stopping(ILogger logger);

    [LoggerMessage(3, LogLevel.Information, "proxysel: draining {Held} held connection(s) for up to {Seconds:0.###} s; new connections pass untouched")]
    public static partial void Draining(ILogger logger, int held, double seconds);

    [LoggerMessage(4, LogLevel.Information, "proxysel: drained, every held connection finished")]
    public static partial void Drained(ILogger logger);

    [LoggerMessage(5, LogLevel.Warning, "proxysel: drain ended with {Held} connection(s) still held; closing them")]
    public static partial void DrainEnded(ILogger logger, int held);

    [LoggerMessage(6, LogLevel.Information, "proxysel: stopped, rules removed; {Counters}")]
    public static partial void Stopped(ILogger logger, ProxySelection.Engine.ProxyCounters counters);

    /// <summary>The outcome line of a reload (SIGHUP or the control socket), as <see cref="PolicyReload.Apply"/> words it.</summary>
    [LoggerMessage(7, LogLevel.Information, "{Outcome}")]
    public static partial void Reload(ILogger logger, string outcome);

    [LoggerMessage(8, LogLevel.Critical, "proxysel: failed to start: {Reason}")]
    public static partial void StartFailed(ILogger logger, string reason);

    [LoggerMessage(17, LogLevel.Warning, "proxysel: SIGHUP is ignored in this process (its parent ignored it, e.g. nohup): reload with `proxysel reload` (the control socket) instead")]
    public static partial void SighupIgnored(ILogger logger);

    [LoggerMessage(10, LogLevel.Information, "proxysel: control socket {Path}")]
    public static partial void ControlListening(ILogger logger, string path);

    [LoggerMessage(11, LogLevel.Warning, "proxysel: no control socket: {Reason}")]
    public static partial void ControlUnavailable(ILogger logger, string reason);

    /// <summary>The host-configured mode alone: no role, policy, ports or queue are in play (a line kind of its own).</summary>
    [LoggerMessage(14, LogLevel.Information, "proxysel: running mode=host-configured socks={Socks} auth={Auth} id={ProxyId}")]
    public static partial void RunningHostConfigured(ILogger logger, System.Net.EndPoint? socks, string auth, byte proxyId);

    /// <summary>After <see cref="Stopped"/>, when a SOCKS server ran.</summary>
    [LoggerMessage(15, LogLevel.Information, "proxysel: socks {Counters}")]
    public static partial void SocksStopped(ILogger logger, ProxySelection.Engine.Fronts.SocksCounters counters);

    /// <summary>After <see cref="Stopped"/>, when a Convert server ran.</summary>
    [LoggerMessage(16, LogLevel.Information, "proxysel: convert {Counters}")]
    public static partial void ConvertStopped(ILogger logger, ProxySelection.Engine.Fronts.SocksCounters counters);

    [LoggerMessage(13, LogLevel.Information, "proxysel: capability cache flushed over the control socket, {Removed} entries removed")]
    public static partial void CacheFlushed(ILogger logger, int removed);
}
