using System.Globalization;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// SIGHUP: re-reads the configuration and applies what the negotiator reads per decision (policy, priority, probe
/// timeout) and the drain timeout, without touching held connections. Everything else is fixed in the rules, the
/// listeners or the relay at start; a change to it refuses the whole reload, which then changes nothing.
/// </summary>
internal sealed class PolicyReload(ProxyHostOptions running, NegotiatorOptions live)
{
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
        var fixedKeys = FixedChanges(Running, next).ToList();
        if (fixedKeys.Count > 0)
        {
            return "proxysel: reload refused; these keys only change with a restart: " + string.Join(", ", fixedKeys.Select(ProxyConfiguration.Key));
        }

        // The negotiator reads these per decision; each is one aligned write, so a decision sees the old or the new value.
        live.Policy = next.Policy;
        live.Priority = (byte)next.Priority;
        live.ProbeTimeout = next.ProbeTimeout;
        Running = next;
        return string.Create(CultureInfo.InvariantCulture,
            $"proxysel: reloaded policy={next.Policy} priority={next.Priority} probe_timeout={next.ProbeTimeout.TotalMilliseconds}ms drain_timeout={next.DrainTimeout.TotalSeconds}s");
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

        // The key ring is built once; a new key file (or new contents) needs a restart.
        if (!string.Equals(a.KeyFile, b.KeyFile, StringComparison.Ordinal))
        {
            yield return nameof(a.KeyFile);
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

        if (!string.Equals(a.ControlSocketPath, b.ControlSocketPath, StringComparison.Ordinal))
        {
            yield return nameof(a.ControlSocket);
        }

        if (a.Logging != b.Logging)
        {
            yield return nameof(a.Logging);
        }
    }
}
