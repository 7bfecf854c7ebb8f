using System.Globalization;
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

        if (options.QueueNumber is < 0 or > ushort.MaxValue)
        {
            Fail(nameof(options.QueueNumber), Was("must be 0..65535", options.QueueNumber));
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

    private static string Was(string reason, int value) => string.Create(CultureInfo.InvariantCulture, $"{reason} (was {value})");
}
