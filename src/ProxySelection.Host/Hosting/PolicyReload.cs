using System.Globalization;
using ProxySelection.Host.Telemetry;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// SIGHUP: re-reads the configuration and applies what the negotiator reads per decision (policy, priority, probe
/// timeout), the drain timeout, the operator keys (a step of a rotation, spec §9.4) and the SOCKS users file's content, without touching held
/// connections. Everything else is fixed in the rules, the listeners or the relay at start; a change to it refuses
/// the whole reload, which then changes nothing.
/// </summary>
/// <param name="running">The settings the proxy started with (or last reloaded).</param>
/// <param name="live">The negotiator's options, changed in place.</param>
/// <param name="liveKeys">The key ring the engine signs and verifies with; null leaves keys out of reloads (tests).</param>
/// <param name="telemetry">The exporters' settings in force (they are built at start); null for the defaults.</param>
/// <param name="liveUsers">The SOCKS users the front checks; a reload reads the users file again (same path) into it.</param>
internal sealed class PolicyReload(ProxyHostOptions running, NegotiatorOptions live, MpProxyKeyRing? liveKeys = null, TelemetryOptions? telemetry = null,
    ProxySelection.Engine.Fronts.SocksCredentials? liveUsers = null)
{
    private readonly TelemetryOptions _telemetry = telemetry ?? new();

    /// <summary>The settings in force, for the drain timeout a later stop uses.</summary>
    public ProxyHostOptions Running { get; private set; } = running;

    /// <summary>Applies <paramref name="reloaded"/> if it is valid and changes only reloadable keys; returns the line to print.</summary>
    public string Apply(ProxyConfigurationResult reloaded)
    {
        ArgumentNullException.ThrowIfNull(reloaded);
        if (!reloaded.IsValid)
        {
            return "proxysel: reload refused, the configuration is invalid; still running as before: " + string.Join("; ", reloaded.Errors);
        }

        var next = reloaded.Options!;
        var fixedKeys = FixedChanges(Running, next).Select(ProxyConfiguration.Key).Concat(TelemetryChanges(_telemetry, reloaded.Telemetry)).ToList();
        if (fixedKeys.Count > 0)
        {
            return "proxysel: reload refused; these keys only change with a restart: " + string.Join(", ", fixedKeys);
        }

        // Keys come from files: with an operator key on both sides they are reloaded even when no setting changed.
        var nextKeys = reloaded.Engine!.KeyRing;
        bool reloadKeys = liveKeys is not null && Running.KeyFile is not null && next.KeyFile is not null;
        if (reloadKeys && liveKeys!.FindConflict(nextKeys) is { } reused)
        {
            return string.Create(CultureInfo.InvariantCulture,
                $"proxysel: reload refused; {ProxyConfiguration.Key(nameof(next.KeyId))}: key id {reused} already names another key; a new key needs a new key id (spec §9.4)");
        }

        // The negotiator reads these per decision; each is one aligned write, so a decision sees the old or the new value.
        live.Policy = next.Policy;
        live.Priority = (byte)next.Priority;
        live.ProbeTimeout = next.ProbeTimeout;
        string keys = "";
        if (reloadKeys)
        {
            // One snapshot swap: a SYN is signed or verified with the old keys or the new, never a mix.
            liveKeys!.ReplaceWith(nextKeys);
            keys = string.Create(CultureInfo.InvariantCulture,
                $" key_id={nextKeys.CurrentKeyId}{(nextKeys.PreviousKeyId is { } verify ? $" verify_key_id={verify}" : "")}");
        }

        string users = "";
        if (liveUsers is not null && reloaded.Engine.Socks?.Credentials is { } nextUsers)
        {
            // The path is fixed (a restart changes it); what the file says now is what an operator edited it for.
            liveUsers.ReplaceWith(nextUsers);
            users = string.Create(CultureInfo.InvariantCulture, $" socks_users={nextUsers.Count}");
        }

        Running = next;
        return string.Create(CultureInfo.InvariantCulture,
            $"proxysel: reloaded policy={next.Policy} priority={next.Priority} probe_timeout={next.ProbeTimeout.TotalMilliseconds}ms drain_timeout={next.DrainTimeout.TotalSeconds}s{keys}{users}");
    }

    /// <summary>The exporters are built once at start: a changed <c>Telemetry</c> key refuses the reload rather than being ignored.</summary>
    private static IEnumerable<string> TelemetryChanges(TelemetryOptions a, TelemetryOptions b)
    {
        const string Section = TelemetryOptions.SectionName + ":";
        if (!string.Equals(a.ServiceName, b.ServiceName, StringComparison.Ordinal))
        {
            yield return Section + "ServiceName";
        }

        if (a.Console != b.Console)
        {
            yield return Section + "Console";
        }

        if (a.Otlp.Endpoint != b.Otlp.Endpoint)
        {
            yield return Section + "Otlp:Endpoint";
        }

        if (a.Otlp.Protocol != b.Otlp.Protocol)
        {
            yield return Section + "Otlp:Protocol";
        }

        if (a.Prometheus.Endpoint != b.Prometheus.Endpoint)
        {
            yield return Section + "Prometheus:Endpoint";
        }

        if (a.ExportInterval != b.ExportInterval)
        {
            yield return Section + "ExportInterval";
        }
    }

    private static IEnumerable<string> FixedChanges(ProxyHostOptions a, ProxyHostOptions b)
    {
        if (a.Role != b.Role)
        {
            yield return nameof(a.Role);
        }

        if (a.Mode != b.Mode)
        {
            yield return nameof(a.Mode);
        }

        if (a.ProxyId != b.ProxyId)
        {
            yield return nameof(a.ProxyId);
        }

        // The SOCKS listener is bound once at start, and its users with it.
        if (a.SocksEndpoint != b.SocksEndpoint)
        {
            yield return nameof(a.Socks);
        }

        if (a.SocksUsersFile != b.SocksUsersFile)
        {
            yield return nameof(a.SocksUsersFile);
        }

        if (a.Convert != b.Convert)
        {
            yield return nameof(a.Convert);
        }

        // A random key (no key file) cannot become an operator key or the other way round in place: the proxies that
        // verify this one's tags would change. Between operator keys, files and ids are reloaded.
        if ((a.KeyFile is null) != (b.KeyFile is null))
        {
            yield return nameof(a.KeyFile);
        }

        if (a.KeyFile is null && b.KeyFile is null && (a.KeyId != b.KeyId || a.VerifyKeyId != b.VerifyKeyId))
        {
            yield return nameof(a.KeyId);
        }

        if (!a.Ports.SequenceEqual(b.Ports))
        {
            yield return nameof(a.Ports);
        }

        if (a.QueueNumber != b.QueueNumber)
        {
            yield return nameof(a.QueueNumber);
        }

        if (a.Capacity != b.Capacity)
        {
            yield return nameof(a.Capacity);
        }

        if (!string.Equals(a.ChainPrefix, b.ChainPrefix, StringComparison.Ordinal))
        {
            yield return nameof(a.ChainPrefix);
        }

        if (a.IdleTimeout != b.IdleTimeout)
        {
            yield return nameof(a.IdleTimeout);
        }

        if (a.KernelFastPath != b.KernelFastPath)
        {
            yield return nameof(a.KernelFastPath);
        }

        if (a.KernelSigning != b.KernelSigning)
        {
            yield return nameof(a.KernelSigning);
        }

        if (a.KernelJoins != b.KernelJoins)
        {
            yield return nameof(a.KernelJoins);
        }

        if (!string.Equals(a.ControlSocketPath, b.ControlSocketPath, StringComparison.Ordinal))
        {
            yield return nameof(a.ControlSocket);
        }

        if (a.Logging != b.Logging)
        {
            yield return nameof(a.Logging);
        }

        // The loggers' filters are built with the host.
        if (a.LogLevel != b.LogLevel)
        {
            yield return nameof(a.LogLevel);
        }

        if (!a.AnnounceAddresses.SequenceEqual(b.AnnounceAddresses, StringComparer.Ordinal))
        {
            yield return nameof(a.AnnounceAddresses);
        }

        // The issue-12 bounds are read once, when the engine, its queue, rules and fronts are built.
        if (a.ProbeRatePerSourcePrefix != b.ProbeRatePerSourcePrefix || a.ProbeRatePerDestination != b.ProbeRatePerDestination
            || a.ProbeRateTableEntries != b.ProbeRateTableEntries)
        {
            yield return nameof(a.ProbeRatePerSourcePrefix);
        }

        if (a.ProbeRateGlobal != b.ProbeRateGlobal)
        {
            yield return nameof(a.ProbeRateGlobal);
        }

        if (a.ObservedTtl != b.ObservedTtl)
        {
            yield return nameof(a.ObservedTtl);
        }

        if (a.AdoptionTimeout != b.AdoptionTimeout)
        {
            yield return nameof(a.AdoptionTimeout);
        }

        if (a.SocksMaxHandshakesPerSource != b.SocksMaxHandshakesPerSource || a.SocksMaxConnectionsPerSource != b.SocksMaxConnectionsPerSource)
        {
            yield return nameof(a.SocksMaxConnectionsPerSource);
        }

        if (a.MaxHeldSyns != b.MaxHeldSyns || a.QueueWaitRoom != b.QueueWaitRoom)
        {
            yield return nameof(a.MaxHeldSyns);
        }

        if (a.RaisedScheduling != b.RaisedScheduling)
        {
            yield return nameof(a.RaisedScheduling);
        }

        if (!a.EdgeInterfaces.SequenceEqual(b.EdgeInterfaces, StringComparer.Ordinal))
        {
            yield return nameof(a.EdgeInterfaces);
        }

        // The sysctl, the routing engine's commands and the telemetry resource are set at start.
        if (a.Instance.Enabled != b.Instance.Enabled || a.Instance.Id != b.Instance.Id
            || a.Instance.AnnounceCommand != b.Instance.AnnounceCommand || a.Instance.WithdrawCommand != b.Instance.WithdrawCommand
            || a.Instance.ConvergenceTime != b.Instance.ConvergenceTime)
        {
            yield return nameof(a.Instance);
        }
    }
}
