-- Fields a message's Connection header names belong to that connection (RFC 9110 §7.6.1): a proxy
-- removes them before passing the message on. HAProxy drops its own connection options (close,
-- keep-alive) but forwards any other field the client (or a server) names, e.g. `Connection:
-- X-Secret` with `X-Secret: ...`. These two actions remove them, request and response alike, as
-- the Python balancer does (lb/http11.py). haproxy.cfg loads this file (lua-load).

local function named(headers)
    local names = {}
    local values = headers["connection"]
    if values == nil then
        return names
    end
    for _, value in pairs(values) do
        for token in string.gmatch(value, "[^,%s]+") do
            local name = string.lower(token)
            if name ~= "host" then  -- the one a request cannot go without (the Python balancer keeps it too)
                names[#names + 1] = name
            end
        end
    end
    return names
end

core.register_action("drop_connection_named_req", { "http-req" }, function(txn)
    for _, name in ipairs(named(txn.http:req_get_headers())) do
        txn.http:req_del_header(name)
    end
end)

core.register_action("drop_connection_named_res", { "http-res" }, function(txn)
    for _, name in ipairs(named(txn.http:res_get_headers())) do
        txn.http:res_del_header(name)
    end
end)
