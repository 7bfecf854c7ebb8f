using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Kernel;
using ProxySelection.Host.Control;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// Proxy:Instance (spec §12.6): what makes this daemon one instance of a tier behind ECMP or an L4 balancer. At start
/// the C flag (<see cref="JoinInitialAddressSysctl"/>: the kernel configuration, its old value recorded for the stop and
/// for <c>proxysel cleanup</c>); once the rules are in, the routing engine's announce command; at a drain or stop, its
/// withdraw command first, and the old sysctl value back last. A daemon that dies leaves the withdraw to the unit's
/// <c>ExecStopPost=</c> and the sysctl to <c>proxysel cleanup</c>.
/// </summary>
internal sealed class InstanceMode(InstanceSettings settings, ILogger log, string recordPath, string? sysctlPath = null, ICommandRunner? runner = null)
{
    /// <summary>The sysctl whose 0 sets the C flag in the MP_CAPABLE this namespace's listeners send (RFC 8684 §3.1).</summary>
    public const string Sysctl = JoinInitialAddressSysctl.Name;

    /// <summary>How long the routing engine's command may run; birdc answers in milliseconds.</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    private readonly JoinInitialAddressSysctl _sysctl = new(recordPath, sysctlPath);
    private readonly ICommandRunner _runner = runner ?? new ProcessCommandRunner(timeout: CommandTimeout);
    private readonly Lock _lock = new();
    private bool _set;
    private bool _withdrawn;

    /// <summary>The configured id, or <c>HOST-netINODE</c>: two instances on one host live in two namespaces.</summary>
    public static string IdFor(InstanceSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return settings.Id ?? DefaultId(Environment.MachineName, ControlSocketPaths.CurrentNamespace);
    }

    public static string DefaultId(string hostName, string? namespaceId) => namespaceId is null ? hostName : $"{hostName}-net{namespaceId}";

    /// <summary>
    /// Sets the C flag's sysctl, its old value recorded. Throws <see cref="StartFailureException"/> naming the setting
    /// when it cannot take effect: not permitted (a read-only /proc/sys, as in an unprivileged container) or a kernel
    /// without the sysctl.
    /// </summary>
    public void SetJoinInitialAddressOff()
    {
        string before;
        try
        {
            before = _sysctl.SetOff();
        }
        catch (JoinInitialAddressException e) when (e.Missing)
        {
            throw new StartFailureException(new StartFailure(StartFailureKind.KernelFeatureMissing,
                $"{InstanceSettings.Key(nameof(InstanceSettings.Enabled))}: {e.Message}, so clients would join the anycast address on any instance"));
        }
        catch (JoinInitialAddressException e)
        {
            throw new StartFailureException(new StartFailure(StartFailureKind.NotPermitted,
                $"{InstanceSettings.Key(nameof(InstanceSettings.Enabled))}: cannot set {Sysctl}=0 in this network namespace ({e.Message}); without it clients join the anycast address on any instance. Run with CAP_NET_ADMIN and a writable /proc/sys, or set it beforehand"));
        }

        lock (_lock)
        {
            _set = true;
        }

        InstanceLog.JoinInitialAddressOff(log, Sysctl, before);
    }

    /// <summary>Puts the recorded value back (nothing if it was 0 already or never set). Idempotent; never throws.</summary>
    public void RestoreJoinInitialAddress()
    {
        lock (_lock)
        {
            if (!_set)
            {
                return;
            }

            _set = false;
        }

        try
        {
            if (_sysctl.Restore() is { } value)
            {
                InstanceLog.JoinInitialAddressRestored(log, Sysctl, value);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            InstanceLog.RestoreFailed(log, Sysctl, e.Message);
        }
    }

    /// <summary>Runs the announce command (none configured: nothing). A failure is logged: the daemon serves what reaches it.</summary>
    public async Task AnnounceAsync(CancellationToken cancellationToken)
    {
        if (settings.AnnounceCommand is not { } command)
        {
            return;
        }

        if (await RunAsync(command, cancellationToken).ConfigureAwait(false) is { } error)
        {
            InstanceLog.CommandFailed(log, InstanceSettings.Key(nameof(InstanceSettings.AnnounceCommand)), error);
            return;
        }

        InstanceLog.ServiceAnnounced(log);
    }

    /// <summary>Runs the withdraw command once, whether or not the announce succeeded (the route may be there from before). Never throws.</summary>
    public async Task WithdrawAsync(string why)
    {
        if (settings.WithdrawCommand is not { } command)
        {
            return;
        }

        lock (_lock)
        {
            if (_withdrawn)
            {
                return;
            }

            _withdrawn = true;
        }

        if (await RunAsync(command, CancellationToken.None).ConfigureAwait(false) is { } error)
        {
            InstanceLog.CommandFailed(log, InstanceSettings.Key(nameof(InstanceSettings.WithdrawCommand)), error);
            return;
        }

        InstanceLog.ServiceWithdrawn(log, why);
    }

    /// <summary>Null on success, else what went wrong in one line.</summary>
    private async Task<string?> RunAsync(string command, CancellationToken cancellationToken)
    {
        try
        {
            var outcome = await _runner.RunAsync("/bin/sh", ["-c", command], null, cancellationToken).ConfigureAwait(false);
            return outcome.Succeeded ? null : $"`{command}` failed: {(outcome.StdErr.Trim() is { Length: > 0 } err ? err : outcome.StdOut.Trim())}";
        }
        catch (Exception e) when (e is InterceptionRulesException or IOException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            return $"`{command}`: {e.Message}";
        }
    }
}

/// <summary>Instance mode's lines. Event ids 310..319.</summary>
internal static partial class InstanceLog
{
    [LoggerMessage(310, LogLevel.Information, "proxysel: instance mode: {Sysctl}=0 (was {Before}): MP_CAPABLE carries the C flag")]
    public static partial void JoinInitialAddressOff(ILogger logger, string sysctl, string before);

    [LoggerMessage(311, LogLevel.Information, "proxysel: instance mode: {Sysctl} back to {Value}")]
    public static partial void JoinInitialAddressRestored(ILogger logger, string sysctl, string value);

    [LoggerMessage(312, LogLevel.Warning, "proxysel: instance mode: could not restore {Sysctl} ({Reason}); proxysel cleanup puts the recorded value back")]
    public static partial void RestoreFailed(ILogger logger, string sysctl, string reason);

    [LoggerMessage(313, LogLevel.Information, "proxysel: instance mode: service address announced to the routing engine")]
    public static partial void ServiceAnnounced(ILogger logger);

    [LoggerMessage(314, LogLevel.Information, "proxysel: instance mode: service address withdrawn from the routing engine ({Why})")]
    public static partial void ServiceWithdrawn(ILogger logger, string why);

    [LoggerMessage(315, LogLevel.Error, "proxysel: instance mode: {Key}: {Error}")]
    public static partial void CommandFailed(ILogger logger, string key, string error);
}
