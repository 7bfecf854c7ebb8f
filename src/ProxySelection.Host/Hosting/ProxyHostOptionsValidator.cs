using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Hosting;

/// <summary>Range checks on <see cref="ProxyHostOptions"/>; each failure names the configuration key and the reason.</summary>
internal sealed class ProxyHostOptionsValidator : IValidateOptions<ProxyHostOptions>
{
    public static readonly TimeSpan MaxDrainTimeout = TimeSpan.FromMinutes(5);

    /// <summary>iptables chain names are at most 28 characters; the engine appends up to 12.</summary>
    public const int MaxChainPrefixLength = 16;

    public const int MaxControlSocketPathBytes = 107;

    public ValidateOptionsResult Validate(string? name, ProxyHostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        void Fail(string key, string reason) => errors.Add(ProxyConfiguration.Key(key) + ": " + reason);

        if (!Enum.IsDefined(options.Role))
        {
            Fail(nameof(options.Role), "must be downgrade or upgrade");
        }

        if (!Enum.IsDefined(options.Mode))
        {
            Fail(nameof(options.Mode), "must be explicit, implicit or socks");
        }

        if (!Enum.IsDefined(options.Policy))
        {
            Fail(nameof(options.Policy), "must be first, nearest-server or priority");
        }

        if (options.ProxyId is < 1 or > 255)
        {
            Fail(nameof(options.ProxyId), Was("must be 1..255 (0 means \"no proxy\" on the wire)", options.ProxyId));
        }

        if (options.Priority is < 0 or > 15)
        {
            Fail(nameof(options.Priority), Was("must be 0..15 (a 4-bit wire field)", options.Priority));
        }

        if (options.KeyId is < 1 or > 255)
        {
            Fail(nameof(options.KeyId), Was("must be 1..255", options.KeyId));
        }

        if (options.VerifyKeyFile is not null)
        {
            if (options.KeyFile is null)
            {
                Fail(nameof(options.VerifyKeyFile), "needs Proxy:KeyFile: a verify-only key rotates an operator key, not this proxy's random one");
            }

            if (options.VerifyKeyId is null)
            {
                Fail(nameof(options.VerifyKeyFile), "needs Proxy:VerifyKeyId, the key id the other proxies give that key");
            }
        }

        if (options.VerifyKeyId is { } verifyId)
        {
            if (options.VerifyKeyFile is null)
            {
                Fail(nameof(options.VerifyKeyId), "is set but Proxy:VerifyKeyFile is not");
            }

            if (verifyId is < 1 or > 255)
            {
                Fail(nameof(options.VerifyKeyId), Was("must be 1..255", verifyId));
            }
            else if (verifyId == options.KeyId)
            {
                Fail(nameof(options.VerifyKeyId), Was("must differ from Proxy:KeyId: one id names one key", verifyId));
            }
        }

        if (options.Ports is null || options.Ports.Count == 0)
        {
            Fail(nameof(options.Ports), "must list at least one port");
        }
        else
        {
            foreach (var port in options.Ports.Where(p => p is < 1 or > 65535))
            {
                Fail(nameof(options.Ports), Was("every port must be 1..65535", port));
            }
        }

        ValidateAnnounceAddresses(options, Fail);
        ValidateInstance(options.Instance, options, Fail);

        if (options.QueueNumber is < 0 or > ushort.MaxValue - 1)
        {
            Fail(nameof(options.QueueNumber), Was("must be 0..65534 (the next queue is the egress hook's)", options.QueueNumber));
        }

        if (options.Capacity < 1)
        {
            Fail(nameof(options.Capacity), Was("must be at least 1", options.Capacity));
        }

        if (options.ProbeTimeout < NegotiatorOptions.MinProbeTimeout || options.ProbeTimeout > NegotiatorOptions.MaxProbeTimeout)
        {
            Fail(nameof(options.ProbeTimeout), string.Create(CultureInfo.InvariantCulture,
                $"must be within {NegotiatorOptions.MinProbeTimeout.TotalMilliseconds}..{NegotiatorOptions.MaxProbeTimeout.TotalMilliseconds} ms: below, probes time out on ordinary paths; above, a client's SYN retransmission (1 s) overtakes two lost probes (was {options.ProbeTimeout.TotalMilliseconds} ms)"));
        }

        if (string.IsNullOrEmpty(options.ChainPrefix) || options.ChainPrefix.Length > MaxChainPrefixLength
            || !options.ChainPrefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            Fail(nameof(options.ChainPrefix), $"must be 1..{MaxChainPrefixLength} letters, digits, '-' or '_' (was \"{options.ChainPrefix}\")");
        }

        if (options.DrainTimeout < TimeSpan.Zero || options.DrainTimeout > MaxDrainTimeout)
        {
            Fail(nameof(options.DrainTimeout), $"must be within 0 s..5 min (was {options.DrainTimeout})");
        }

        if (options.IdleTimeout < TimeSpan.FromSeconds(1) || options.IdleTimeout > TimeSpan.FromDays(1))
        {
            Fail(nameof(options.IdleTimeout), $"must be within 1 s..1 day (was {options.IdleTimeout})");
        }

        ValidateHardening(options, Fail);

        if (!Enum.IsDefined(options.LogLevel))
        {
            Fail(nameof(options.LogLevel), "must be trace, debug, information, warning, error, critical or none");
        }

        if (!Enum.IsDefined(options.Logging))
        {
            Fail(nameof(options.Logging), "must be plain, json or systemd");
        }

        if (options.ControlSocketPath is { } socket)
        {
            // sun_path is 108 bytes including the terminating NUL.
            if (!Path.IsPathFullyQualified(socket) || System.Text.Encoding.UTF8.GetByteCount(socket) > MaxControlSocketPathBytes)
            {
                Fail(nameof(options.ControlSocket), $"must be an absolute path of at most {MaxControlSocketPathBytes} bytes (a unix socket address), or \"{ProxyHostOptions.NoControlSocket}\" (was \"{socket}\")");
            }
        }

        if (options.Socks is { } socks && !ProxyConfiguration.TryParseEndPoint(socks, out _))
        {
            Fail(nameof(options.Socks), $"must be an address and a port 1..65535, e.g. 0.0.0.0:1080 or [2001:db8::1]:1080 (was \"{socks}\")");
        }

        if (options.Convert is { } convert && !ProxyConfiguration.TryParseEndPoint(convert, out _))
        {
            Fail(nameof(options.Convert), $"must be an address and a port 1..65535, e.g. 0.0.0.0:5124 (was \"{convert}\")");
        }

        foreach (var (key, reason) in FrontPortConflicts(options))
        {
            Fail(key, reason);
        }

        if (options.EventsFile is { Length: 0 })
        {
            Fail(nameof(options.EventsFile), "is empty; leave it out for no event file, or name a file");
        }

        if (options.SocksUsersFile is { } users)
        {
            if (users.Length == 0)
            {
                Fail(nameof(options.SocksUsersFile), "is empty; leave it out for NO AUTH, or name a file of name:password lines");
            }
            else if (options.SocksEndpoint is null)
            {
                Fail(nameof(options.SocksUsersFile), "is set but no SOCKS server runs: set Proxy:Socks or Proxy:Mode=socks");
            }
        }

        if (options.KeyFile is { Length: 0 })
        {
            Fail(nameof(options.KeyFile), "is empty; leave the key out for a random key, or name a file");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    public const int MaxInstanceIdLength = 128;

    /// <summary>Proxy:Instance:ConvergenceTime at most: a drain's grace, within the drain's own bound's order.</summary>
    public static readonly TimeSpan MaxConvergenceTime = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Proxy:Instance. With the C flag a client joins only announced addresses: an instance that announces none would
    /// leave its clients one subflow (spec §12.6). Commands belong to instance mode, where a routing engine exists.
    /// </summary>
    private static void ValidateInstance(InstanceSettings? instance, ProxyHostOptions options, Action<string, string> fail)
    {
        const string Section = InstanceSettings.SectionName + ":";
        if (instance is null)
        {
            fail(InstanceSettings.SectionName, "must be a section");
            return;
        }

        if (instance.Enabled && (options.AnnounceAddresses is null || options.AnnounceAddresses.Count == 0))
        {
            fail(Section + nameof(instance.Enabled),
                "needs Proxy:AnnounceAddresses: with the C flag set, clients join only the addresses an instance announces (its unicast address)");
        }

        if (instance.Id is { } id && (id.Length is 0 or > MaxInstanceIdLength || id.Any(c => char.IsControl(c) || char.IsWhiteSpace(c))))
        {
            fail(Section + nameof(instance.Id), $"must be 1..{MaxInstanceIdLength} printable characters without spaces (was \"{id}\")");
        }

        foreach (var (name, command) in new[] { (nameof(instance.AnnounceCommand), instance.AnnounceCommand), (nameof(instance.WithdrawCommand), instance.WithdrawCommand) })
        {
            if (command is null)
            {
                continue;
            }

            if (string.IsNullOrWhiteSpace(command))
            {
                fail(Section + name, "must not be empty (leave it out for none)");
            }
            else if (!instance.Enabled)
            {
                fail(Section + name, "needs Proxy:Instance:Enabled: the routing engine's commands belong to instance mode");
            }
        }

        if (instance.ConvergenceTime < TimeSpan.Zero || instance.ConvergenceTime > MaxConvergenceTime)
        {
            fail(Section + nameof(instance.ConvergenceTime), $"must be within 0..60 s (was {instance.ConvergenceTime})");
        }

        if ((instance.AnnounceCommand is null) != (instance.WithdrawCommand is null))
        {
            fail(Section + (instance.AnnounceCommand is null ? nameof(instance.AnnounceCommand) : nameof(instance.WithdrawCommand)),
                "is needed with the other: a route the daemon announces must be one it can withdraw, and the other way round");
        }
    }

    /// <summary>
    /// Spec §7.8.1: only the downgrade holder announces, and only unicast addresses a client can join (whether each is
    /// this host's is checked at start, where the interfaces are: <see cref="ProxySelection.Engine.AddressAnnouncer.NotLocal"/>).
    /// </summary>
    private static void ValidateAnnounceAddresses(ProxyHostOptions options, Action<string, string> fail)
    {
        const string Key = nameof(options.AnnounceAddresses);
        if (options.AnnounceAddresses is null || options.AnnounceAddresses.Count == 0)
        {
            return;
        }

        if (options.Role != ProxyRole.Downgrade)
        {
            fail(Key, "applies to the downgrade role only (the upgrade holder does not announce its addresses to the TCP client)");
        }

        var seen = new HashSet<IPAddress>();
        foreach (var text in options.AnnounceAddresses)
        {
            // IPAddress.TryParse also reads "1" and "1.2" (as 0.0.0.1, 1.0.0.2): a dotted quad or an IPv6 text only.
            if (!IPAddress.TryParse(text, out var address)
                || (address.AddressFamily == AddressFamily.InterNetwork ? text.Count(c => c == '.') != 3 : !text.Contains(':', StringComparison.Ordinal)))
            {
                fail(Key, $"\"{text}\" is not an IPv4 or IPv6 address");
            }
            else if (!IsAnnounceable(address))
            {
                fail(Key, $"{text} is not a unicast address a client can join (unspecified, loopback, multicast, broadcast or link-local)");
            }
            else if (!seen.Add(address))
            {
                fail(Key, $"{text} is listed twice");
            }
        }
    }

    private static bool IsAnnounceable(IPAddress address)
    {
        if (IPAddress.IsLoopback(address) || address.IsIPv6Multicast || address.IsIPv6LinkLocal || address.IsIPv4MappedToIPv6
            || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.Broadcast))
        {
            return false;
        }

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var bytes = address.GetAddressBytes();
            // 224.0.0.0/4 multicast, 240.0.0.0/4 reserved, 169.254.0.0/16 link-local, 0.0.0.0/8 "this network".
            return bytes[0] is not (>= 224 or 0) && !(bytes[0] == 169 && bytes[1] == 254);
        }

        return true;
    }

    private static string Was(string reason, int value) => string.Create(CultureInfo.InvariantCulture, $"{reason} (was {value})");
    /// <summary>
    /// A front that would share its port with the other front or with a transparent listener fails at bind; said here
    /// instead, naming the key. The transparent listeners take every port of Proxy:Ports on 0.0.0.0 and [::], so any
    /// address family collides; two fronts collide on the same address, or when either is a wildcard.
    /// </summary>
    private static IEnumerable<(string Key, string Reason)> FrontPortConflicts(ProxyHostOptions options)
    {
        IPEndPoint? socks = options.SocksEndpoint is { } s && ProxyConfiguration.TryParseEndPoint(s, out var parsedSocks) ? parsedSocks : null;
        IPEndPoint? convert = options.Convert is { } c && ProxyConfiguration.TryParseEndPoint(c, out var parsedConvert) ? parsedConvert : null;
        if (socks is not null && convert is not null && socks.Port == convert.Port
            && (socks.Address.Equals(convert.Address) || IsWildcard(socks.Address) || IsWildcard(convert.Address)))
        {
            yield return (nameof(options.Convert), $"listens where Proxy:Socks does ({convert} and {socks}): give the Convert server a port of its own");
        }

        if (options.Mode == ProxyMode.Socks || options.Ports is null)
        {
            yield break;
        }

        foreach (var (key, front) in new[] { (nameof(options.Socks), socks), (nameof(options.Convert), convert) })
        {
            if (front is not null && options.Ports.Contains(front.Port))
            {
                yield return (key, string.Create(CultureInfo.InvariantCulture,
                    $"port {front.Port} is also in Proxy:Ports, where the transparent mode listens on every address: pick another port or leave {front.Port} out of Proxy:Ports"));
            }
        }
    }

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    /// <summary>The issue-12 block of <see cref="ProxyHostOptions"/>: probe rate limits, observed-fact TTL, adoption, SOCKS per source, holds, edge.</summary>
    private static void ValidateHardening(ProxyHostOptions options, Action<string, string> fail)
    {
        CheckRange(fail, nameof(options.ProbeRatePerSourcePrefix), options.ProbeRatePerSourcePrefix, 1, 1_000_000, "probes per second");
        CheckRange(fail, nameof(options.ProbeRatePerDestination), options.ProbeRatePerDestination, 1, 1_000_000, "probes per second");
        CheckRange(fail, nameof(options.ProbeRateGlobal), options.ProbeRateGlobal, 0, 1_000_000, "probes per second (0: no global cap)");
        CheckRange(fail, nameof(options.ProbeRateTableEntries), options.ProbeRateTableEntries, 1, 1 << 22, "entries");
        CheckRange(fail, nameof(options.SocksMaxHandshakesPerSource), options.SocksMaxHandshakesPerSource, 1, 1 << 20, "handshakes");
        CheckRange(fail, nameof(options.SocksMaxConnectionsPerSource), options.SocksMaxConnectionsPerSource, 1, 1 << 24, "connections");
        CheckRange(fail, nameof(options.MaxHeldSyns), options.MaxHeldSyns, 1, 1 << 20, "SYNs");
        CheckRange(fail, nameof(options.QueueWaitRoom), options.QueueWaitRoom, 16, 1 << 20, "packets");
        var maxObserved = new NegotiatorOptions().Cache.ProxyBeyondTtl;
        if (options.ObservedTtl < TimeSpan.FromSeconds(1) || options.ObservedTtl > maxObserved)
        {
            fail(nameof(options.ObservedTtl), $"must be within 1 s..{maxObserved.TotalSeconds:F0} s: a fact no probe of this proxy checked must not outlive a Defer (was {options.ObservedTtl})");
        }

        if (options.AdoptionTimeout <= TimeSpan.Zero || options.AdoptionTimeout > ProxySelection.Engine.ProxyEngineOptions.MaxAdoptionTimeout)
        {
            fail(nameof(options.AdoptionTimeout), $"must be above 0 and at most {ProxySelection.Engine.ProxyEngineOptions.MaxAdoptionTimeout.TotalSeconds:F0} s (spec) (was {options.AdoptionTimeout})");
        }

        foreach (var name in options.EdgeInterfaces)
        {
            // Goes into an iptables rule: an interface name and nothing else.
            if (string.IsNullOrEmpty(name) || name.Length > 15 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '@'))
            {
                fail(nameof(options.EdgeInterfaces), $"each must be an interface name, 1..15 letters, digits, '-', '_', '.' or '@' (was \"{name}\")");
            }
        }
    }

    private static void CheckRange(Action<string, string> fail, string key, int value, int min, int max, string unit)
    {
        if (value < min || value > max)
        {
            fail(key, string.Create(CultureInfo.InvariantCulture, $"must be within {min:N0}..{max:N0} {unit} (was {value})"));
        }
    }
}
